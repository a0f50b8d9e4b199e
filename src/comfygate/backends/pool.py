"""The pool of ComfyUI backends: health, circuit breaking, routing, failover signals.

Each backend has one pooled HTTP client and one websocket listener, both with the gateway's
client id. Health:

    healthy ──(refused connection, or 2 failed probes)──> unhealthy
       ^                                                      │ probe answers
       └──────────(2 probes answer in a row)──── recovering <─┘

A refused connection is a passive signal that marks a backend down at once (and tells the
jobs layer its queue is gone); a lost websocket triggers a probe now rather than at the next
interval. Unhealthy backends get no jobs (the circuit is open); a recovering one gets one at
a time. Routing picks, among backends that have every node type and model the job needs, the
one with the least work. The pool knows nothing of jobs: the jobs layer registers callbacks.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Literal

from comfygate.backends.backend import MODEL_INPUTS, Backend, Health, parse_backend
from comfygate.backends.requirements import Missing, Requirements, missing
from comfygate.comfy.client import ComfyClient
from comfygate.comfy.events import Event, QueueStatus
from comfygate.comfy.listener import WebsocketListener
from comfygate.errors import BackendUnavailable, BackendUnreachable

log = logging.getLogger(__name__)

FAILED_PROBES_TO_OPEN = 2  # probe failures (not refusals) before a backend is unhealthy
PROBES_TO_CLOSE = 2  # answering probes before a recovering backend is healthy again
RECOVERY_PROBE_INTERVAL_S = 1.0  # unhealthy/recovering backends are probed this often

Routing = Literal["least_loaded", "round_robin"]


EventCallback = Callable[["Backend", Event], None]
ConnectionCallback = Callable[["Backend", bool], None]
# (backend, queue_lost): queue_lost when ComfyUI refused connections, i.e. its process (and
# with it its in-memory queue) is gone.
DownCallback = Callable[["Backend", bool], None]


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
        routing: Routing = "least_loaded",
    ) -> None:
        # ComfyUI sends a prompt's events only to the client id that submitted it: a gateway
        # that restarts must come back with the same id to hear about its jobs.
        self.client_id = client_id or uuid.uuid4().hex
        self.backends: dict[str, Backend] = {}
        for index, spec in enumerate(specs, 1):
            name, url = parse_backend(spec, index)
            if name in self.backends:
                name = f"{name}-{index}"
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
        self.routing = routing
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_event: EventCallback | None = None
        self._on_connection: ConnectionCallback | None = None
        self._on_capacity: Callable[[], None] | None = None
        self._on_down: DownCallback | None = None

    def set_handlers(
        self,
        on_event: EventCallback,
        on_connection: ConnectionCallback,
        on_capacity: Callable[[], None],
        on_down: DownCallback | None = None,
    ) -> None:
        self._on_event = on_event
        self._on_connection = on_connection
        self._on_capacity = on_capacity
        self._on_down = on_down

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
            if backend.usable and backend.listener is not None:
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
        while not self._stop.wait(min(RECOVERY_PROBE_INTERVAL_S, self._probe_interval_s)):
            now = time.monotonic()
            for backend in list(self.backends.values()):
                if self._stop.is_set():
                    return
                interval = self._probe_interval_s if backend.healthy else RECOVERY_PROBE_INTERVAL_S
                if now - backend.last_probe >= interval:
                    self.probe(backend)

    def probe(self, backend: Backend) -> bool:
        started = time.monotonic()
        backend.last_probe = started
        try:
            backend.client.system_stats(timeout_s=min(2.0, self._connect_timeout_s))
            if not backend.object_info or (
                time.monotonic() - backend.object_info_at > self._object_info_ttl_s
            ):
                backend.object_info = backend.client.object_info()
                backend.object_info_at = time.monotonic()
        except BackendUnavailable as exc:
            self.report_failure(backend, exc)
            return False
        backend.latency_ms = round((time.monotonic() - started) * 1000, 1)
        self._probe_answered(backend)
        return True

    def _probe_answered(self, backend: Backend) -> None:
        backend.failures = 0
        backend.successes += 1
        before = backend.health
        if before is Health.UNHEALTHY:
            # Started in the unknown state: the first answer is enough.
            backend.health = Health.RECOVERING if backend.last_error else Health.HEALTHY
            backend.successes = 1
        if backend.health is Health.RECOVERING and backend.successes >= PROBES_TO_CLOSE:
            backend.health = Health.HEALTHY
        if backend.health is not before:
            log.info("backend %s", backend.health.value, extra={"backend": backend.name})
            if self._on_capacity is not None:
                self._on_capacity()

    def report_failure(self, backend: Backend, exc: Exception) -> None:
        """An active probe or a passive signal (a failed request) says the backend failed."""
        refused = isinstance(exc, BackendUnreachable)
        backend.last_error = str(exc)
        backend.successes = 0
        backend.failures += 1
        if backend.health is Health.UNHEALTHY:
            return
        if (
            refused
            or backend.failures >= FAILED_PROBES_TO_OPEN
            or (backend.health is Health.RECOVERING)
        ):
            backend.health = Health.UNHEALTHY
            log.warning("backend unhealthy: %s", exc, extra={"backend": backend.name})
            if self._on_down is not None:
                self._on_down(backend, refused)

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
            # A lost websocket, or one back after a restart: probe now, not at the interval.
            threading.Thread(target=self.probe, args=(backend,), daemon=True).start()
        if self._on_connection is not None:
            self._on_connection(backend, connected)

    # --- routing --------------------------------------------------------------------------

    def get(self, name: str | None) -> Backend | None:
        return self.backends.get(name) if name else None

    def any_healthy(self) -> bool:
        return any(b.usable for b in self.backends.values())

    def check(self, req: Requirements) -> tuple[bool, str]:
        """Whether some usable backend can run a job with these requirements, and if none
        can, a reason a user can act on (all down, or what is missing where)."""
        usable = [b for b in self.backends.values() if b.usable]
        if not usable:
            return False, "no ComfyUI backend is available right now"
        gaps: list[Missing] = []
        for backend in usable:
            gap = missing(req, backend.object_info)
            if not gap:
                return True, ""
            gaps.append(gap)
        best = min(gaps, key=lambda g: len(g.node_types) + len(g.values))
        return False, f"no available backend has what this job needs: {best.describe()}"

    def has_room(self) -> bool:
        """Some backend has room for one more job (whether it can run a given one or not)."""
        with self._lock:
            return any(b.capacity(self.max_in_flight) > 0 for b in self.backends.values())

    def acquire(self, req: Requirements | None = None) -> Backend | None:
        """Reserve room for one job on the best backend that can run it, or None."""
        with self._lock:
            candidates = [
                b
                for b in self.backends.values()
                if b.capacity(self.max_in_flight) > 0
                and (req is None or not missing(req, b.object_info))
            ]
            if not candidates:
                return None
            turn = next(self._turn)
            if self.routing == "round_robin":
                backend = candidates[turn % len(candidates)]
            else:
                # Least work first; among equals, take turns rather than always the first.
                least = min(b.work for b in candidates)
                tied = [b for b in candidates if b.work == least]
                backend = tied[turn % len(tied)]
            backend.in_flight += 1
            return backend

    def release(self, backend_name: str | None) -> None:
        with self._lock:
            backend = self.backends.get(backend_name or "")
            if backend is not None and backend.in_flight > 0:
                backend.in_flight -= 1
        if self._on_capacity is not None:
            self._on_capacity()

    def claim(self, backend_name: str | None) -> None:
        """Count a job found running on a backend after a restart."""
        with self._lock:
            backend = self.backends.get(backend_name or "")
            if backend is not None:
                backend.in_flight += 1

    def refresh_object_info(self) -> None:
        for backend in self.backends.values():
            if backend.usable:
                try:
                    backend.object_info = backend.client.object_info()
                    backend.object_info_at = time.monotonic()
                except BackendUnavailable as exc:
                    self.report_failure(backend, exc)

    def model_choices(self, *, last_known: bool = False) -> dict[str, list[str]]:
        """The model files usable backends offer, by folder. ``last_known``: what every
        backend offered when last seen, usable or not (to answer from the cache while none
        is up, with the defaults a request would have had)."""
        out: dict[str, list[str]] = {}
        for folder in MODEL_INPUTS:
            names: set[str] = set()
            for backend in self.backends.values():
                if backend.usable or last_known:
                    names.update(backend.model_choices(folder))
            out[folder] = sorted(names)
        return out
