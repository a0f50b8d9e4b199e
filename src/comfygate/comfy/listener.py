"""One websocket listener per ComfyUI backend, on a thread of its own.

It connects to ``/ws?clientId=<ours>``, turns each text message into a typed event and hands
it to a callback; binary frames (latent previews) are skipped. When the connection drops it
reconnects with exponential backoff, and reports the connection state so the gateway can
fall back to ``/history`` polling while it is down and reconcile in-flight jobs after.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import websocket

from comfygate.comfy import frames
from comfygate.comfy.events import Event, QueueStatus, parse_message
from comfygate.comfy.frames import FrameReader, ProtocolError

log = logging.getLogger(__name__)

EventHandler = Callable[[Event | QueueStatus], None]
StateHandler = Callable[[bool], None]


def ws_url(base_url: str, client_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


# ComfyUI writes ``{"type": ..., "data": ...}`` (json.dumps, type first): its per-node
# ``progress_state`` messages, a third of a job's and the largest, are skipped unread.
# Another spelling is simply decoded, and ignored after.
_UNREAD = (b'{"type": "progress_state"',)


# One read from the socket takes up to this much: ComfyUI writes a job's messages in bursts.
READ_SIZE = 65536


class WebsocketListener:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        on_event: EventHandler,
        on_state: StateHandler,
        *,
        name: str = "comfyui",
        connect_timeout_s: float = 3.0,
        ping_interval_s: float = 10.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.url = ws_url(base_url, client_id)
        self.name = name
        self._on_event = on_event
        self._on_state = on_state
        self._connect_timeout_s = connect_timeout_s
        self._ping_interval_s = ping_interval_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._up = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = False

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"ws-listener-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.abort()  # type: ignore[no-untyped-call]
            except Exception:
                log.debug("abort failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def reconnect_now(self) -> None:
        """Drop the current connection (it will be made again at once)."""
        with self._lock:
            ws = self._ws
        if ws is not None:
            ws.abort()  # type: ignore[no-untyped-call]

    def wait_connected(self, timeout_s: float) -> bool:
        return self._up.wait(timeout_s)

    def _set_state(self, connected: bool) -> None:
        if connected:
            self._up.set()
        else:
            self._up.clear()
        if self.connected != connected:
            self.connected = connected
            self._on_state(connected)

    def _connect(self) -> websocket.WebSocket:
        # websocket-client makes the connection and sends; frames are read by _receive.
        ws = websocket.WebSocket(skip_utf8_validation=True)
        ws.settimeout(self._connect_timeout_s)
        parts = urlsplit(self.url)
        if parts.scheme == "wss":
            ws.connect(self.url, suppress_origin=True)  # type: ignore[no-untyped-call]
            return ws
        # websocket-client leaks its socket when a plain-ws handshake fails (a ComfyUI that
        # refuses /ws, or one going down): we own the TCP socket and close it ourselves.
        sock = socket.create_connection(
            (parts.hostname, parts.port or 80), timeout=self._connect_timeout_s
        )
        try:
            ws.connect(self.url, socket=sock, suppress_origin=True)  # type: ignore[no-untyped-call]
        except BaseException:
            sock.close()
            raise
        return ws

    def _run(self) -> None:
        delay = self._backoff_initial_s
        while not self._stop.is_set():
            try:
                ws = self._connect()
            except Exception as exc:
                log.debug("websocket connect to %s failed: %s", self.name, exc)
                self._set_state(False)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            with self._lock:
                self._ws = ws
            if self._stop.is_set():
                ws.close()
                break
            delay = self._backoff_initial_s
            log.info("websocket connected", extra={"backend": self.name})
            self._set_state(True)
            try:
                self._receive(ws)
            finally:
                with self._lock:
                    self._ws = None
                try:
                    ws.close()
                    ws.shutdown()  # type: ignore[no-untyped-call]  # close() is a no-op after EOF
                except Exception:
                    log.debug("close failed", exc_info=True)
                self._set_state(False)
                if not self._stop.is_set():
                    log.warning("websocket lost, reconnecting", extra={"backend": self.name})

    def _receive(self, ws: websocket.WebSocket) -> None:
        """Read the connection until it closes: whole socket reads into a FrameReader
        (``comfy/frames.py``: websocket-client's reader took 42 socket reads a job)."""
        sock = ws.sock
        if sock is None:  # closed meanwhile (stop)
            return
        sock.settimeout(self._ping_interval_s)
        reader = FrameReader()
        while not self._stop.is_set():
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                try:
                    ws.ping()  # a dead peer shows up as a failed send
                except Exception:
                    return
                continue
            except OSError:
                return
            if not data:
                return  # the peer closed the socket
            try:
                for opcode, payload in reader.feed(data):
                    if not self._message(ws, opcode, payload):
                        return
            except ProtocolError as exc:
                log.warning("websocket: %s", exc, extra={"backend": self.name})
                return

    def _message(self, ws: websocket.WebSocket, opcode: int, payload: bytes) -> bool:
        """Act on one message; False once the connection is over (a close frame)."""
        if opcode == frames.TEXT:
            if payload.startswith(_UNREAD):
                return True  # a message the gateway ignores, by its first bytes: not decoded
            try:
                event = parse_message(json.loads(payload))  # refuses what is not UTF-8 text
            except ValueError:
                return True
            if event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("event handler failed", extra={"backend": self.name})
        elif opcode == frames.PING:
            try:
                ws.pong(payload)
            except Exception:
                return False
        elif opcode == frames.CLOSE:
            return False
        return True  # binary previews, pongs
