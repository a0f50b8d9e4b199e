"""A gateway app served over real HTTP (waitress, in a thread) for the SDK and CLI tests: the
SDK speaks requests, so it needs a socket, not Flask's test client."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server


@contextmanager
def serve(app: Flask, threads: int = 8) -> Iterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port; yields its base URL. At exit every connection
    is closed, the loop thread and the worker threads are joined."""
    server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="comfygate-test")
    assert isinstance(server, BaseWSGIServer)
    # waitress's stubs leave out (or mistype) the attributes used below.
    internals: Any = server
    thread = threading.Thread(target=server.run, name="live-gateway", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{internals.effective_port}"
    finally:
        trigger = internals.trigger
        socket_map = internals._map

        def close_all_but_the_trigger() -> None:
            for dispatcher in list(socket_map.values()):
                if dispatcher is trigger:
                    continue
                with contextlib.suppress(OSError):
                    if dispatcher is server:
                        # The server's own close() would close the trigger too.
                        wasyncore.dispatcher.close(dispatcher)
                    else:
                        dispatcher.close()
            socket_map.clear()  # the loop ends once its map is empty

        # Closing sockets from this thread would race the loop's select(), so a thunk does it
        # inside the loop. The trigger itself stays open until the workers are joined: any
        # thread may pull it until then (a pull that finds it closed fails with EBADF).
        trigger.pull_trigger(close_all_but_the_trigger)
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=10)
        trigger.close()
        assert not thread.is_alive(), "the live server's loop did not stop"
