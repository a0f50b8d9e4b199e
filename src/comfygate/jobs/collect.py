"""Collection: the end of a job on ComfyUI, to its end state in the ledger.

The outputs as the websocket's ``executed`` messages named them (a success the websocket
saw whole), or one /history read; on success, every output is taken into the output storage
(from the disk when the backend's folders are on this host, ``BACKEND_DIRS`` or the managed
local ComfyUI; else streamed from /view), checked against the cost
limits, and only then the job succeeds (the result cache gets it as the job ends). A failure
reads the failing node from the history (or the websocket's ``execution_error``). A storage
that cannot be written is tried again a few times; then the job fails with a clear error and
nothing of it is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from comfygate.backends.backend import Backend
from comfygate.backends.pool import BackendPool
from comfygate.comfy.client import HistoryEntry, OutputRef
from comfygate.comfy.folders import LocalFolders
from comfygate.errors import ComfyGateError, GenerationFailed, StorageFailed
from comfygate.jobs.bus import EventBus
from comfygate.jobs.holdings import Holdings
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.model import Job, Output, now
from comfygate.metrics import Metrics
from comfygate.storage.base import OutputStorage
from comfygate.storage.local import content_type, image_size, output_name
from comfygate.templates import TemplateRegistry
from comfygate.templates.limits import CostLimits

log = logging.getLogger(__name__)

STORAGE_ATTEMPTS = 4


class OverLimit(Exception):
    """A job returned more, or larger, images than the cost limits allow."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def returned_refs(
    templates: TemplateRegistry, job: Job, refs: Sequence[OutputRef]
) -> list[OutputRef]:
    """The files of ``refs`` the job returns: saved outputs (previews too for a template
    that says so)."""
    template = templates.get(job.template) if job.template in templates else None
    include_temp = template is not None and template.include_temp_outputs
    return [r for r in refs if r.type == "output" or (include_temp and r.type == "temp")]


class Collector:
    def __init__(
        self,
        ledger: Ledger,
        pool: BackendPool,
        holdings: Holdings,
        holder: str,
        outputs: OutputStorage,
        templates: TemplateRegistry,
        limits: CostLimits,
        metrics: Metrics,
        bus: EventBus,
        stopping: threading.Event,
        local_folders: Mapping[str, LocalFolders],
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.holdings = holdings
        self.holder = holder
        self.outputs = outputs
        self.templates = templates
        self.limits = limits
        self.metrics = metrics
        self.bus = bus
        self._stopping = stopping
        self.local_folders = local_folders
        self._not_on_disk: set[str] = set()  # backends whose outputs /view had to bring

    def finalize(self, job_id: str, entry: HistoryEntry | None = None) -> Job | None:
        """Collect an ended prompt (``entry``: its /history, if already read); returns the
        job as this call ended it, or None."""
        if not self.holdings.start_finalizing(job_id):
            return None
        try:
            return self._finalize(job_id, entry)
        finally:
            self.holdings.end_finalizing(job_id)

    def _finalize(self, job_id: str, entry: HistoryEntry | None) -> Job | None:
        job = self.ledger.store.get(job_id)
        if job is None or not job.on_backend or job.holder != self.holder:
            return None
        backend = self.pool.get(job.backend)
        if backend is None or job.prompt_id is None:
            return None
        try:
            if entry is None:
                entry = self._read_history(backend, job.prompt_id)
                if entry is None:
                    return None  # not written yet: the poller or reconciliation comes back
            if entry.status == "success" and entry.completed:
                return self._succeed(job, backend, entry)
            return self.ledger.failed(job_id, self._failure(job_id, entry), self.holder)
        except ComfyGateError as exc:
            self._discard(job.id)
            return self.ledger.failed(
                job_id,
                {
                    "code": exc.code,
                    "message": f"could not collect the outputs: {exc.message}",
                    "details": {},
                },
                self.holder,
            )

    def _succeed(self, job: Job, backend: Backend, entry: HistoryEntry) -> Job | None:
        executed_at = now()
        try:
            outputs = self._store_outputs(job, backend, entry)
        except OverLimit as over:
            self._discard(job.id)  # nothing of it is kept, or cached
            return self.ledger.failed(job.id, over.error, self.holder)
        # The result goes into the cache when the job has ended (JobEngine._ended), not
        # before: the waiting caller does not wait for the copies.
        done = self.ledger.succeeded(job.id, outputs, self.holder, current=job)
        if done is None:
            # Ended meanwhile (cancelled, its deadline) or taken over: not ours to keep.
            latest = self.ledger.store.get(job.id)
            if latest is None or not latest.outputs:
                self._discard(job.id)
            return None
        self.ledger.soon(lambda: self._observe_timings(done, executed_at))
        return done

    def _discard(self, job_id: str) -> None:
        """What was stored of a job that failed; a storage that is down keeps it (the
        retention sweep deletes it later)."""
        try:
            self.outputs.delete_group(job_id)
        except StorageFailed as exc:
            log.warning("could not delete the partial outputs: %s", exc, extra={"job_id": job_id})

    def _failure(self, job_id: str, entry: HistoryEntry) -> dict[str, Any]:
        if entry.interrupted:
            return {
                "code": "generation_failed",
                "message": "the job was interrupted on ComfyUI",
                "details": {},
            }
        held = self.holdings.get(job_id)
        detail = entry.error or (held.exec_error if held else None) or {"message": "failed"}
        where = (
            f"node {detail.get('node_id')} ({detail.get('node_type')})"
            if detail.get("node_id")
            else "the workflow"
        )
        return GenerationFailed(f"{where} failed: {detail.get('message')}", detail).to_dict()

    def _read_history(self, backend: Backend, prompt_id: str) -> HistoryEntry | None:
        delay = 0.05
        for _ in range(5):
            entry = backend.client.history(prompt_id)
            if entry is not None:
                return entry
            if self._stopping.wait(delay):
                return None
            delay *= 2
        return None

    def _store_outputs(self, job: Job, backend: Backend, entry: HistoryEntry) -> list[Output]:
        outputs: list[Output] = []
        counters: dict[str, int] = {}
        refs = returned_refs(self.templates, job, entry.outputs)
        too_many = self.limits.outputs_error(len(refs))
        if too_many is not None:
            raise OverLimit(too_many)
        for ref in refs:
            index = counters.get(ref.node_id, 0)
            counters[ref.node_id] = index + 1
            name = output_name(ref.node_id, index, ref.filename)
            size = self._save(job, backend, ref, name)
            if self.limits.max_pixels is not None:
                stored = self.outputs.open(job.id, name)
                if stored is None:
                    raise StorageFailed("an output just stored cannot be read back")
                with stored:
                    dimensions = image_size(stored.read(256 * 1024))
                too_large = dimensions and self.limits.pixels_error(ref.node_id, *dimensions)
                if too_large:
                    raise OverLimit(too_large)
            output = Output(name, content_type(name), size, ref.node_id, ref.kind)
            outputs.append(output)
            self.bus.publish(
                job.id,
                "output",
                {
                    "filename": name,
                    "url": f"/v1/outputs/{job.id}/{name}",
                    "content_type": output.content_type,
                    "size": size,
                },
            )
        return outputs

    def _save(self, job: Job, backend: Backend, ref: OutputRef, name: str) -> int:
        """Store one output: from the disk when the backend's folders are on this host,
        else streamed from /view; a storage failure is tried again (the download with it),
        then fails the job's collection."""
        folders = self.local_folders.get(backend.name)
        if folders is not None:
            size = self._save_from_disk(folders, job, backend, ref, name)
            if size is not None:
                return size
        try:  # the common case first, without building a retry loop
            with backend.client.view(ref) as chunks:
                return self.outputs.save(job.id, name, chunks)
        except StorageFailed:
            pass
        for attempt in Retrying(
            retry=retry_if_exception_type(StorageFailed),
            stop=stop_after_attempt(STORAGE_ATTEMPTS - 1),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        ):
            with attempt, backend.client.view(ref) as chunks:
                return self.outputs.save(job.id, name, chunks)
        raise AssertionError("unreachable")  # pragma: no cover

    def _save_from_disk(
        self, folders: LocalFolders, job: Job, backend: Backend, ref: OutputRef, name: str
    ) -> int | None:
        """The output taken from ComfyUI's folder (a hard link where it can), without a
        request to ComfyUI; None: /view brings it (the path leads out of ComfyUI's folder,
        or the file is not on this host's disk)."""
        path = folders.file(ref)
        if path is None:
            log.warning("an output path leads out of ComfyUI's folder", extra={"job_id": job.id})
            return None
        try:
            return self.outputs.save_file(job.id, name, path)
        except FileNotFoundError:
            if backend.name not in self._not_on_disk:  # once per backend: a wrong BACKEND_DIRS
                self._not_on_disk.add(backend.name)
                log.warning(
                    "an output is not in the backend's folder on this host (BACKEND_DIRS); "
                    "reading it through /view",
                    extra={"job_id": job.id, "backend": backend.name},
                )
            return None
        except StorageFailed:
            return None  # tried again below, through /view

    def _observe_timings(self, job: Job, executed_at: float) -> None:
        """A succeeded job's three durations, in the metrics and on one log line."""
        timings: dict[str, float] = {}
        if job.started_at is not None:
            timings["queue_wait_s"] = job.started_at - job.created_at
            timings["execution_s"] = max(0.0, executed_at - job.started_at)
            self.metrics.queue_wait.labels(job.template).observe(timings["queue_wait_s"])
            self.metrics.execution.labels(job.template).observe(timings["execution_s"])
        if job.finished_at is not None:
            timings["transfer_s"] = max(0.0, job.finished_at - executed_at)
            self.metrics.transfer.labels(job.template).observe(timings["transfer_s"])
        log.info(
            "job timings",
            extra={
                "job_id": job.id,
                "template": job.template,
                "backend": job.backend,
                **{name: round(value, 3) for name, value in timings.items()},
            },
        )
