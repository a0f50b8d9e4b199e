"""The server-to-client half of websocket framing (RFC 6455 section 5), sans I/O: bytes in,
whole messages out.

Why by hand: ComfyUI sends about 17 messages per model-free job on one connection for all
jobs, and reading them is on the gateway's hot path. websocket-client parses each frame
through a dozen Python calls and reads its header, length and payload from the socket one
by one (42 socket reads a job); wsproto's frame parser, fed whole reads, took 290 us a job
here, against about 30 us for this loop (bench/ws_listener.py). Only what a client reads is
here: frames from a server are never masked, and no extension is negotiated (so the RSV bits
must be clear). websocket-client still makes the connection and sends (pings, pongs, the
close), which is the part it does well.
"""

from __future__ import annotations

from collections.abc import Iterator

TEXT = 0x1
BINARY = 0x2
CONTINUATION = 0x0
CLOSE = 0x8
PING = 0x9
PONG = 0xA
MAX_MESSAGE = 64 * 1024 * 1024  # a message larger than this ends the connection


class ProtocolError(Exception):
    """The server broke the framing: the connection cannot be read further."""


class FrameReader:
    """Feed it what the socket gave; it yields ``(opcode, payload)`` for each whole message
    (text and binary, their fragments joined) and each control frame (ping, pong, close),
    in order. Bytes of a frame not yet complete are kept for the next feed."""

    def __init__(self) -> None:
        self._pending = b""
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragmented_opcode: int | None = None

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        buf = self._pending + data if self._pending else data
        at, end = 0, len(buf)
        try:
            while end - at >= 2:
                first, second = buf[at], buf[at + 1]
                if second & 0x80:
                    raise ProtocolError("a masked frame from the server")
                if first & 0x70:
                    raise ProtocolError("RSV bits set with no extension negotiated")
                length, head = second & 0x7F, 2
                if length == 126:
                    if end - at < 4:
                        break
                    length, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 4
                elif length == 127:
                    if end - at < 10:
                        break
                    length, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 10
                if length > MAX_MESSAGE:
                    raise ProtocolError(f"a frame of {length} bytes")
                if end - at < head + length:
                    break
                payload = buf[at + head : at + head + length]
                at += head + length
                message = self._frame(first & 0x80 != 0, first & 0x0F, payload)
                if message is not None:
                    yield message
        finally:
            self._pending = buf[at:]

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= 0x8:  # control frames: never fragmented, may come between fragments
            if not fin or len(payload) > 125:
                raise ProtocolError("a fragmented or oversized control frame")
            return opcode, payload
        if opcode == CONTINUATION:
            if self._fragmented_opcode is None:
                raise ProtocolError("a continuation frame with no message begun")
        elif self._fragmented_opcode is not None:
            raise ProtocolError("a new message inside a fragmented one")
        elif opcode not in (TEXT, BINARY):
            raise ProtocolError(f"unknown opcode {opcode:#x}")
        elif fin:
            return opcode, payload  # the common case: a whole message in one frame
        else:
            self._fragmented_opcode = opcode
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if self._fragments_size > MAX_MESSAGE:
            raise ProtocolError(f"a message of over {MAX_MESSAGE} bytes")
        if not fin:
            return None
        opcode, self._fragmented_opcode = self._fragmented_opcode or TEXT, None
        whole = b"".join(self._fragments)
        self._fragments, self._fragments_size = [], 0
        return opcode, whole
