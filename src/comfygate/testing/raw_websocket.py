"""A one-connection websocket server on loopback that writes raw bytes, so a test (or
bench/ws_listener.py) decides exactly how ComfyUI's frames are cut between socket writes.
It answers the handshake (RFC 6455 section 4.2), then runs a script with the connection."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
JOIN_S = 10.0

Script = Callable[[socket.socket], None]


def frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One unmasked frame, as a server sends it."""
    n = len(payload)
    first = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        return first + bytes([n]) + payload
    if n < 1 << 16:
        return first + bytes([126]) + struct.pack("!H", n) + payload
    return first + bytes([127]) + struct.pack("!Q", n) + payload


def read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    """One (masked) frame from the client: its opcode and unmasked payload."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client went away")
            data += chunk
        return data

    head = exactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    mask = exactly(4)
    body = exactly(n)
    return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def _handshake(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("the client went away before its handshake")
        request += chunk
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    # SHA-1 is what the protocol's handshake names, not a security choice.
    accept = base64.b64encode(hashlib.sha1(key + GUID, usedforsecurity=False).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


@contextlib.contextmanager
def serving(script: Script) -> Iterator[str]:
    """Serve one connection with ``script`` (after the handshake); gives the base URL
    (``http://127.0.0.1:PORT``, as a ComfyUI's). The connection closes when the script
    returns; the server when the block ends."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                _handshake(conn)
                script(conn)

    thread = threading.Thread(target=serve, name="raw-websocket", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        thread.join(JOIN_S)
