"""The websocket listener reads ComfyUI's frames from a buffer of whole socket reads
(``_BufferedWebSocket``): whatever way the bytes arrive (a job's messages in one write, a
frame split byte by byte, a frame larger than one read, a ping between frames), the events
come out whole and in order. A loopback server speaks the server side of RFC 6455 by hand,
so the test decides exactly how the bytes are cut."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from comfygate.comfy import listener as listener_module
from comfygate.comfy.events import Event, Executing, ExecutionStart, ExecutionSuccess, QueueStatus
from comfygate.comfy.frames import FrameReader, ProtocolError
from comfygate.comfy.listener import WebsocketListener
from comfygate.testing.raw_websocket import frame, read_client_frame, serving

TIMEOUT_S = 10.0


def _text(msg: dict[str, Any]) -> bytes:
    return frame(json.dumps(msg).encode())


def _start(prompt_id: str) -> dict[str, Any]:
    return {"type": "execution_start", "data": {"prompt_id": prompt_id}}


def _success(prompt_id: str) -> dict[str, Any]:
    return {"type": "execution_success", "data": {"prompt_id": prompt_id}}


Events = queue.Queue[Event | QueueStatus]


@contextlib.contextmanager
def _listening(
    script: Callable[[socket.socket], None], done: threading.Event
) -> Iterator[tuple[Events, queue.Queue[bool]]]:
    """A listener on a raw server running ``script``: its events and connection states.
    ``done`` (which the script may wait on to keep the connection open) is set at the end."""
    events: Events = queue.Queue()
    states: queue.Queue[bool] = queue.Queue()
    listener: WebsocketListener | None = None
    try:
        with serving(script) as url:
            listener = WebsocketListener(url, "test-client", events.put, states.put)
            listener.start()
            try:
                yield events, states
            finally:
                done.set()
    finally:  # after the server is gone: a reconnect is refused at once
        if listener is not None:
            listener.stop()


def _take(events: Events, n: int) -> list[Event | QueueStatus]:
    return [events.get(timeout=TIMEOUT_S) for _ in range(n)]


def test_a_burst_of_messages_in_one_write_comes_out_whole_and_in_order() -> None:
    done = threading.Event()
    progress = {"type": "progress_state", "data": {"prompt_id": "p0", "nodes": {}}}

    def script(conn: socket.socket) -> None:
        burst = b"".join(
            _text(_start(f"p{i}")) + _text(progress) + _text(_success(f"p{i}")) for i in range(50)
        )
        conn.sendall(frame(b"\x89PNG preview", opcode=0x2) + burst)
        done.wait(TIMEOUT_S)

    with _listening(script, done) as (events, _):
        got = _take(events, 100)
    expected: list[Event | QueueStatus] = []
    for i in range(50):
        expected += [ExecutionStart(f"p{i}"), ExecutionSuccess(f"p{i}")]
    assert got == expected  # the preview and progress_state messages skipped, nothing else


def test_frames_cut_anywhere_and_larger_than_one_read_are_joined() -> None:
    done = threading.Event()
    big_node = "n" * (3 * listener_module.READ_SIZE)  # one message over three reads
    big = {"type": "executing", "data": {"prompt_id": "big", "node": big_node}}

    def script(conn: socket.socket) -> None:
        stream = (
            _text(_start("a"))
            + _text(big)
            + _text({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 3}}}})
        )
        for i in range(0, 64):  # the first bytes one at a time: headers cut mid-way
            conn.sendall(stream[i : i + 1])
        conn.sendall(stream[64:])
        done.wait(TIMEOUT_S)

    with _listening(script, done) as (events, _):
        got = _take(events, 3)
    assert got == [ExecutionStart("a"), Executing("big", big_node), QueueStatus(3)]


def test_a_fragmented_message_and_a_ping_between_messages() -> None:
    pongs: queue.Queue[bytes] = queue.Queue()
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        whole = json.dumps(_success("frag")).encode()
        conn.sendall(
            _text(_start("frag"))
            + frame(b"are you there", opcode=0x9)  # ping
            + frame(whole[:10], opcode=0x1, fin=False)
            + frame(whole[10:20], opcode=0x0, fin=False)
            + frame(whole[20:], opcode=0x0, fin=True)
        )
        opcode, payload = read_client_frame(conn)
        if opcode == 0xA:
            pongs.put(payload)
        done.wait(TIMEOUT_S)

    with _listening(script, done) as (events, _):
        got = _take(events, 2)
        pong = pongs.get(timeout=TIMEOUT_S)
    assert got == [ExecutionStart("frag"), ExecutionSuccess("frag")]
    assert pong == b"are you there"


def test_a_close_frame_after_the_messages_ends_the_connection_with_nothing_lost() -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(
            _text(_start("last")) + _text(_success("last")) + frame(b"\x03\xe8", opcode=0x8)
        )

    with _listening(script, threading.Event()) as (events, states):
        got = _take(events, 2)
        assert states.get(timeout=TIMEOUT_S) is True
        assert states.get(timeout=TIMEOUT_S) is False  # the close was read: connection lost
    assert got == [ExecutionStart("last"), ExecutionSuccess("last")]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x81\x85abcd" + b"xxxxx", "masked"),  # servers never mask
        (b"\xc1\x01x", "RSV"),  # no extension was negotiated
        (b"\x80\x01x", "continuation"),  # a continuation with nothing begun
        (b"\x83\x01x", "opcode"),  # a reserved opcode
        (b"\x01\x01a\x81\x01b", "inside"),  # a new message inside a fragmented one
        (b"\x09\x01x", "control"),  # a fragmented ping
    ],
)
def test_framing_a_server_must_not_send_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        list(FrameReader().feed(data))


def test_a_reader_keeps_an_incomplete_frame_for_the_next_read() -> None:
    reader = FrameReader()
    whole = frame(b"x" * 300) + frame(b"", opcode=0xA)
    got = [m for i in range(len(whole)) for m in reader.feed(whole[i : i + 1])]
    assert got == [(0x1, b"x" * 300), (0xA, b"")]
