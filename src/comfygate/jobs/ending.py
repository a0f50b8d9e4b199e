"""The end of a job, in the process that wrote it: the result into the cache, then the job
leaves its coalescing key, its metrics and log line, its webhook's wake-up, and the removal
of its files on a ComfyUI on this host. A ledger end listener (``Ledger.on_end``); for a
synchronous request it runs once the answer is sent (``JobEngine.answering``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from comfygate.comfy.folders import LocalFolders
from comfygate.errors import StorageFailed
from comfygate.jobs import retention
from comfygate.jobs.admission import Admission
from comfygate.jobs.cache import ResultCache
from comfygate.jobs.model import Job, JobStatus
from comfygate.jobs.store import JobStore
from comfygate.jobs.webhooks import WebhookOutbox
from comfygate.metrics import Metrics

log = logging.getLogger(__name__)


class JobEnd:
    def __init__(
        self,
        store: JobStore,
        cache: ResultCache | None,
        admission: Admission,
        metrics: Metrics,
        local_folders: Mapping[str, LocalFolders],
        later: Callable[..., Any],
    ) -> None:
        self.store = store
        self.cache = cache
        self.admission = admission
        self.metrics = metrics
        self.local_folders = local_folders
        self.later = later
        self.webhooks: WebhookOutbox | None = None

    def __call__(self, before: JobStatus, job: Job) -> None:
        if job.status is JobStatus.SUCCEEDED and not job.cached:
            self._cache_result(job)
        # After the cache has the result: until then an identical request finds this job by
        # its key, and is answered from its files (Admission.enqueue).
        key = self.admission.in_flight_key(job)
        if key is not None:
            self.store.leave_in_flight(key, job.id)
        self.metrics.jobs_finished.labels(job.template, job.status.value).inc()
        took = {"duration_s": round(job.finished_at - job.created_at, 3)} if job.finished_at else {}
        log.info(
            "job %s",
            job.status.value,
            extra={"job_id": job.id, "template": job.template, "backend": job.backend, **took},
        )
        if job.webhook_url and self.webhooks is not None:
            self.webhooks.wake()
        folders = self.local_folders.get(job.backend or "")
        if before in (JobStatus.SUBMITTED, JobStatus.RUNNING) and folders is not None:
            self.later(retention.remove_backend_files, self.store, folders, job)

    def _cache_result(self, job: Job) -> None:
        if job.cache_key is None or self.cache is None:
            return
        try:
            self.cache.put(job.cache_key, job.outputs, job.id)
        except (OSError, StorageFailed) as exc:
            log.warning("could not cache the result: %s", exc, extra={"job_id": job.id})
