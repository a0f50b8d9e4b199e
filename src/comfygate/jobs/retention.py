"""Retention: finished jobs older than JOB_RETENTION_S go, with their outputs, input images
and what the end of the job left on a ComfyUI on this host. Any process may sweep (deleting
twice is harmless)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from comfygate.comfy.folders import LocalFolders
from comfygate.jobs.model import Job, now
from comfygate.jobs.store import JobStore
from comfygate.storage.base import OutputStorage

log = logging.getLogger(__name__)


def sweep(
    store: JobStore,
    outputs: OutputStorage,
    inputs: OutputStorage,
    retention_s: float,
    local_folders: Mapping[str, LocalFolders],
) -> int:
    """Delete finished jobs (and their files) older than the retention time."""
    count = 0
    while ids := store.finished_before(now() - retention_s):
        for job_id in ids:
            outputs.delete_group(job_id)
            inputs.delete_group(job_id)
            store.delete(job_id)
            for folders in local_folders.values():
                folders.remove_job_outputs(job_id)
            count += 1
    if count:
        log.info("retention sweep deleted %d jobs", count)
    return count


def remove_backend_files(store: JobStore, folders: LocalFolders, job: Job) -> None:
    """Delete an ended job's files on a ComfyUI on this host: its output folder (the outputs
    are in storage by now) and the input images no unfinished job also uses (a job that
    needs an image is in the store before it uploads it)."""
    folders.remove_job_outputs(job.id)
    if job.inputs:
        needed = {name for j in store.unfinished() for name in j.inputs}
        folders.remove_inputs(n for n in job.inputs if n not in needed)
