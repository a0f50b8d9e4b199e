"""A gateway app served over real HTTP (waitress, in a thread) for the SDK and CLI tests: the
SDK speaks requests, so it needs a socket, not Flask's test client."""

from __future__ import annotations

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
        # Closing the sockets from this thread would race the loop's select(); a trigger
        # thunk runs inside the loop, and the loop ends once its map is empty.
        internals.trigger.pull_trigger(lambda: wasyncore.close_all(internals._map))
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=10)
        assert not thread.is_alive(), "the live server's loop did not stop"
