"""The pool of ComfyUI backends: health, load, model lists, routing.

Each backend has one pooled HTTP client and one websocket listener, both with the gateway's
client id. Health comes from an active probe (``/system_stats`` with a short timeout) and
from passive signals (a refused connection marks a backend down at once). The jobs layer
registers callbacks for ComfyUI's events and for connection changes; the pool knows nothing
of jobs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from comfygate.comfy.client import ComfyClient
from comfygate.comfy.events import Event, QueueStatus
from comfygate.comfy.listener import WebsocketListener
from comfygate.errors import BackendUnavailable

log = logging.getLogger(__name__)

# Which node input lists the files of each models folder (used to pick a default model).
MODEL_INPUTS: dict[str, tuple[str, str]] = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "loras": ("LoraLoader", "lora_name"),
    "vae": ("VAELoader", "vae_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
}

EventCallback = Callable[["Backend", Event], None]
ConnectionCallback = Callable[["Backend", bool], None]


def parse_backend(spec: str) -> tuple[str, str]:
    """``name=url`` or a bare URL (named after its host and port)."""
    name, sep, url = spec.partition("=")
    if not sep:
        url = spec
        parts = urlsplit(url)
        name = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return name.strip(), url.strip().rstrip("/")


@dataclass
class Backend:
    name: str
    url: str
    client: ComfyClient
    healthy: bool = False
    last_error: str | None = None
    latency_ms: float | None = None
    queue_remaining: int = 0
    in_flight: int = 0
    object_info: dict[str, Any] = field(default_factory=dict)
    object_info_at: float = 0.0
    listener: WebsocketListener | None = None

    @property
    def ws_connected(self) -> bool:
        return self.listener is not None and self.listener.connected

    def model_choices(self, folder: str) -> list[str]:
        node, name = MODEL_INPUTS.get(folder, ("", ""))
        try:
            choices = self.object_info[node]["input"]["required"][name][0]
        except (KeyError, IndexError, TypeError):
            return []
        return [c for c in choices if isinstance(c, str)]

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": "healthy" if self.healthy else "unhealthy",
            "websocket": "connected" if self.ws_connected else "disconnected",
            "jobs_in_flight": self.in_flight,
            "queue_length": self.queue_remaining,
            "last_error": self.last_error,
            "latency_ms": self.latency_ms,
            "node_types": len(self.object_info),
        }


class BackendPool:
    def __init__(
        self,
        specs: list[str],
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        probe_interval_s: float = 5.0,
        object_info_ttl_s: float = 60.0,
        max_in_flight: int = 2,
        client_id: str | None = None,
    ) -> None:
        # ComfyUI sends a prompt's events only to the client id that submitted it: a gateway
        # that restarts must come back with the same id to hear about its jobs.
        self.client_id = client_id or uuid.uuid4().hex
        self.backends: dict[str, Backend] = {}
        for spec in specs:
            name, url = parse_backend(spec)
            client = ComfyClient(
                url,
                self.client_id,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
            )
            self.backends[name] = Backend(name, url, client)
        self._connect_timeout_s = connect_timeout_s
        self._probe_interval_s = probe_interval_s
        self._object_info_ttl_s = object_info_ttl_s
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_event: EventCallback | None = None
        self._on_connection: ConnectionCallback | None = None
        self._on_healthy: Callable[[], None] | None = None

    def set_handlers(
        self,
        on_event: EventCallback,
        on_connection: ConnectionCallback,
        on_capacity: Callable[[], None],
    ) -> None:
        self._on_event = on_event
        self._on_connection = on_connection
        self._on_healthy = on_capacity

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for backend in self.backends.values():
            self.probe(backend)
            backend.listener = WebsocketListener(
                backend.url,
                self.client_id,
                on_event=lambda ev, b=backend: self._event(b, ev),  # type: ignore[misc]
                on_state=lambda up, b=backend: self._connection(b, up),  # type: ignore[misc]
                name=backend.name,
                connect_timeout_s=self._connect_timeout_s,
            )
            backend.listener.start()
        # Give the websockets a moment, so the first jobs' events are not sent to nobody.
        deadline = time.monotonic() + self._connect_timeout_s
        for backend in self.backends.values():
            if backend.healthy and backend.listener is not None:
                backend.listener.wait_connected(max(0.0, deadline - time.monotonic()))
        self._thread = threading.Thread(target=self._probe_loop, name="backend-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for backend in self.backends.values():
            if backend.listener is not None:
                backend.listener.stop()
        if self._thread is not None:
            self._thread.join(5)
        for backend in self.backends.values():
            backend.client.close()

    # --- health ---------------------------------------------------------------------------

    def _probe_loop(self) -> None:
        while not self._stop.wait(self._probe_interval_s):
            for backend in list(self.backends.values()):
                if self._stop.is_set():
                    return
                self.probe(backend)

    def probe(self, backend: Backend) -> bool:
        started = time.monotonic()
        try:
            backend.client.system_stats(timeout_s=min(2.0, self._connect_timeout_s))
            if not backend.object_info or (
                time.monotonic() - backend.object_info_at > self._object_info_ttl_s
            ):
                backend.object_info = backend.client.object_info()
                backend.object_info_at = time.monotonic()
        except BackendUnavailable as exc:
            self.mark_down(backend, str(exc))
            return False
        backend.latency_ms = round((time.monotonic() - started) * 1000, 1)
        was = backend.healthy
        backend.healthy = True
        if not was:
            log.info("backend healthy", extra={"backend": backend.name})
            if self._on_healthy is not None:
                self._on_healthy()
        return True

    def mark_down(self, backend: Backend, reason: str) -> None:
        backend.last_error = reason
        if backend.healthy:
            log.warning("backend unhealthy: %s", reason, extra={"backend": backend.name})
        backend.healthy = False

    # --- events ---------------------------------------------------------------------------

    def _event(self, backend: Backend, event: Event | QueueStatus) -> None:
        if isinstance(event, QueueStatus):
            backend.queue_remaining = event.queue_remaining
            return
        if self._on_event is not None:
            self._on_event(backend, event)

    def _connection(self, backend: Backend, connected: bool) -> None:
        if self._stop.is_set():
            return
        if connected != backend.healthy:
            # Passive signal either way (lost, or back after a restart): probe now rather
            # than at the next interval.
            threading.Thread(target=self.probe, args=(backend,), daemon=True).start()
        if self._on_connection is not None:
            self._on_connection(backend, connected)

    # --- routing --------------------------------------------------------------------------

    def get(self, name: str | None) -> Backend | None:
        return self.backends.get(name) if name else None

    def any_healthy(self) -> bool:
        return any(b.healthy for b in self.backends.values())

    def acquire(self) -> Backend | None:
        """The healthy backend with the least work that has room for one more job."""
        with self._lock:
            candidates = [
                b for b in self.backends.values() if b.healthy and b.in_flight < self.max_in_flight
            ]
            if not candidates:
                return None
            backend = min(candidates, key=lambda b: (b.in_flight, b.queue_remaining))
            backend.in_flight += 1
            return backend

    def release(self, backend_name: str | None) -> None:
        with self._lock:
            backend = self.backends.get(backend_name or "")
            if backend is not None and backend.in_flight > 0:
                backend.in_flight -= 1
        if self._on_healthy is not None:
            self._on_healthy()

    def claim(self, backend_name: str | None) -> None:
        """Count a job found running on a backend after a restart."""
        with self._lock:
            backend = self.backends.get(backend_name or "")
            if backend is not None:
                backend.in_flight += 1

    def model_choices(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for folder in MODEL_INPUTS:
            names: set[str] = set()
            for backend in self.backends.values():
                if backend.healthy:
                    names.update(backend.model_choices(folder))
            out[folder] = sorted(names)
        return out
