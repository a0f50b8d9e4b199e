"""The websocket listener's own cost per job: CPU time and socket reads of the listener
thread while a loopback server sends ComfyUI 0.3.75's recorded messages of one model-free
job (17 text frames, tests/fixtures/comfyui-samples/ws-model_free.json) ``--jobs`` times,
one burst per job. Two readers alternate for ``--rounds``: websocket-client's
``recv_data`` loop (the listener before: each frame's header, length and payload read from
the socket one by one, and parsed through the library's frame objects), and the listener as
it is (whole socket reads into ``comfy/frames.py``'s ``FrameReader``). Nothing else runs
in the process, so this is the uncontended cost; under load every GIL hand-off costs more.

    .venv/bin/python -m bench.ws_listener --jobs 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket

from comfygate.comfy import listener as listener_module
from comfygate.comfy.events import Event, QueueStatus, parse_message
from comfygate.testing.raw_websocket import serving

SAMPLES = Path(__file__).resolve().parent.parent / "tests/fixtures/comfyui-samples"
DEADLINE_S = 120.0


def _burst() -> tuple[bytes, int]:
    recorded = json.loads((SAMPLES / "ws-model_free.json").read_text())
    frames = []
    for entry in recorded:
        payload = json.dumps(entry["msg"]).encode()
        n = len(payload)
        length = bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
        frames.append(b"\x81" + length + payload)
    return b"".join(frames), len(frames)


def _script(
    burst: bytes, jobs: int, go: threading.Event, sent: threading.Event
) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        go.wait(DEADLINE_S)  # once the listener is connected and its reads counted from 0
        for _ in range(jobs):
            conn.sendall(burst)
            # A job's messages come together, jobs apart: let the reader catch up between.
            sent.wait(0.0005)
        sent.wait(DEADLINE_S)

    return script


class LibraryReads(listener_module.WebsocketListener):
    """The listener's reading before comfy/frames.py: websocket-client's own loop."""

    def _receive(self, ws: websocket.WebSocket) -> None:
        ws.settimeout(10.0)
        while not self._stop.is_set():
            try:
                opcode, payload = ws.recv_data()
            except Exception:
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            if opcode != websocket.ABNF.OPCODE_TEXT or payload.startswith(listener_module._UNREAD):
                continue
            try:
                event = parse_message(json.loads(payload))
            except ValueError:
                continue
            if event is not None:
                self._on_event(event)


def run_once(
    listener_class: type[listener_module.WebsocketListener], jobs: int
) -> dict[str, float]:
    """One run of ``jobs`` bursts through a listener of ``listener_class``."""
    burst, per_job = _burst()
    go, sent = threading.Event(), threading.Event()
    events: list[Event | QueueStatus] = []
    all_in = threading.Event()
    expected = jobs * 11  # a job's 17 messages less its 6 progress_state ones, skipped unread
    spent: list[float] = []
    cpu_at_start = 0.0
    reads = 0
    # Both read the socket through its recv method: counted on a socket class of our own.
    real_socket = socket.socket

    class Counting(real_socket):
        def recv(self, bufsize: int, flags: int = 0) -> bytes:
            nonlocal reads
            reads += 1
            return super().recv(bufsize, flags)

    def on_event(event: Event | QueueStatus) -> None:
        nonlocal cpu_at_start
        if not events:
            cpu_at_start = time.thread_time()
        events.append(event)
        if len(events) >= expected:
            spent.append(time.thread_time() - cpu_at_start)
            all_in.set()

    with serving(_script(burst, jobs, go, sent)) as url:
        listener = listener_class(url, "bench", on_event, lambda up: None)
        socket.socket = Counting  # type: ignore[misc]  # the connection made now is counted
        try:
            listener.start()
            if not listener.wait_connected(DEADLINE_S):
                raise SystemExit("the listener did not connect")
            reads = 0  # the handshake's reads (a byte at a time) are not the messages'
            go.set()
            if not all_in.wait(DEADLINE_S):
                raise SystemExit(f"only {len(events)} of {expected} events in {DEADLINE_S:g} s")
        finally:
            socket.socket = real_socket  # type: ignore[misc]
            go.set()
            sent.set()
            listener.stop()
    return {
        "cpu_us_per_job": spent[0] * 1e6 / jobs,
        "reads_per_job": reads / jobs,
        "frames_per_job": float(per_job),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000, help="bursts of one job's messages per run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each reader, alternating")
    args = p.parse_args(argv)
    readers: dict[str, type[listener_module.WebsocketListener]] = {
        "websocket-client's recv_data (before)": LibraryReads,
        "whole reads into FrameReader (now)": listener_module.WebsocketListener,
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in readers}
    for _ in range(args.rounds):
        for name, reader in readers.items():
            results[name].append(run_once(reader, args.jobs))
    print(f"WebsocketListener, {args.jobs} jobs of ComfyUI 0.3.75's recorded messages per run")
    print("| reader | CPU us per job, each run | median | socket reads per job |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        cpu = [r["cpu_us_per_job"] for r in runs]
        reads: Any = statistics.median(r["reads_per_job"] for r in runs)
        each = ", ".join(f"{c:.0f}" for c in cpu)
        print(f"| {name} | {each} | {statistics.median(cpu):.0f} | {reads:.2f} |")


if __name__ == "__main__":
    main()
