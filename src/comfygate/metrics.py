"""Prometheus metrics, one registry per gateway (so two gateways in one test process do not
share counters). Request metrics are recorded by the API layer, job metrics by the jobs
layer; backend gauges are read from the pool at scrape time, so they are never stale."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from comfygate import __version__
from comfygate.backends.backend import Health
from comfygate.errors import StorageFailed

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Generation times span milliseconds (model-free graphs) to minutes (CPU diffusion).
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _PoolCollector(Collector):
    def __init__(self, snapshot: Callable[[], list[dict[str, Any]]], queued: Callable[[], int]):
        self._snapshot = snapshot
        self._queued = queued

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # One series per backend whatever its state (a label that changes would start a new
        # series on every change); the state itself is comfygate_backend_status.
        up = GaugeMetricFamily(
            "comfygate_backend_up", "1 while the backend is usable", labels=["backend"]
        )
        state = GaugeMetricFamily(
            "comfygate_backend_status",
            "1 for the backend's current health state, 0 for the others",
            labels=["backend", "status"],
        )
        in_flight = GaugeMetricFamily(
            "comfygate_backend_jobs_in_flight",
            "jobs the gateway has on the backend",
            labels=["backend"],
        )
        queue = GaugeMetricFamily(
            "comfygate_backend_queue_length",
            "ComfyUI's own queue length (all clients)",
            labels=["backend"],
        )
        latency = GaugeMetricFamily(
            "comfygate_backend_probe_latency_seconds",
            "last health probe's latency",
            labels=["backend"],
        )
        for b in self._snapshot():
            up.add_metric([b["name"]], 0.0 if b["status"] == "unhealthy" else 1.0)
            for health in Health:
                state.add_metric([b["name"], health.value], float(b["status"] == health.value))
            in_flight.add_metric([b["name"]], b["jobs_in_flight"])
            queue.add_metric([b["name"]], b["queue_length"])
            if b["latency_ms"] is not None:
                latency.add_metric([b["name"]], b["latency_ms"] / 1000)
        queued = GaugeMetricFamily(
            "comfygate_jobs_waiting", "jobs waiting in the gateway for a backend"
        )
        try:
            queued.add_metric([], self._queued())
        except StorageFailed:  # the job store does not answer: no figure rather than a wrong one
            yield from (up, state, in_flight, queue, latency)
            return
        yield from (up, state, in_flight, queue, latency, queued)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # What a default prometheus_client registry has: process_* (CPU, memory, open fds,
        # start time) and python_info; and which version runs.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("comfygate_build", "the running ComfyGate", registry=r).info({"version": __version__})
        self.requests = Counter(
            "comfygate_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "comfygate_http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        # Label children by their values (routes are the app's rules, so the set is bounded).
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self.jobs_finished = Counter(
            "comfygate_jobs_finished", "jobs by end state", ["template", "status"], registry=r
        )
        self.queue_wait = Histogram(
            "comfygate_job_queue_wait_seconds",
            "from creation until ComfyUI started the job",
            ["template"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.execution = Histogram(
            "comfygate_job_execution_seconds",
            "from ComfyUI's start until it finished",
            ["template"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.transfer = Histogram(
            "comfygate_job_output_transfer_seconds",
            "fetching and storing the outputs",
            ["template"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "comfygate_cache_lookups", "result cache lookups", ["result"], registry=r
        )
        self._cache_hits = self.cache.labels("hit")  # kept: one per hit (see request_done)

    def request_done(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """Count one HTTP request and observe its duration. The label children are kept:
        ``labels()`` validates and converts its values and takes the metric's lock, a tenth
        of a job read's time (docs/BENCHMARKS.md §4)."""
        key = (route, method, status)
        counted = self._request_children.get(key)
        if counted is None:
            counted = self.requests.labels(route, method, str(status))
            self._request_children[key] = counted  # a race only makes the same child twice
        counted.inc()
        if seconds is None:
            return
        timed = self._duration_children.get(route)
        if timed is None:
            timed = self.request_seconds.labels(route)
            self._duration_children[route] = timed
        timed.observe(seconds)

    def cache_hit(self) -> None:
        """Count a result-cache hit (``comfygate_cache_lookups{result="hit"}``)."""
        self._cache_hits.inc()

    def watch_pool(
        self, snapshot: Callable[[], list[dict[str, Any]]], queued: Callable[[], int]
    ) -> None:
        self.registry.register(_PoolCollector(snapshot, queued))

    def render(self) -> bytes:
        return generate_latest(self.registry)
