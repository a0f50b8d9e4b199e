"""How the ComfyUI client tells a request that never reached ComfyUI (fail over at once) from
one that may have (ask ComfyUI first): by urllib3's exception types, not message text."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from comfygate.comfy.client import ComfyClient
from comfygate.errors import BackendConnectionLost, BackendUnreachable
from tests.processes import free_port


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A server that reads the request, then closes the connection without an answer."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    server.close()


def test_a_refused_connection_never_reached_comfyui() -> None:
    client = ComfyClient(f"http://127.0.0.1:{free_port()}", "c", connect_timeout_s=2)
    with pytest.raises(BackendUnreachable):
        client.system_stats()
    client.close()


def test_a_connection_lost_after_the_request_may_have_reached_it(hangs_up: int) -> None:
    client = ComfyClient(f"http://127.0.0.1:{hangs_up}", "c", connect_timeout_s=2)
    # BackendConnectionLost and BackendUnreachable are siblings: raising the one is the proof.
    with pytest.raises(BackendConnectionLost):
        client.system_stats()
    client.close()
