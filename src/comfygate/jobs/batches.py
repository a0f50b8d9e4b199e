"""Batches: many items of one template, every one checked before any runs, then queued as
separate jobs (which spread over the backends like any others)."""

from __future__ import annotations

import uuid
from typing import Any

from comfygate.errors import BackendUnavailable, ValidationFailed
from comfygate.jobs.admission import Admission
from comfygate.jobs.cache import CacheHit
from comfygate.jobs.model import Job, now


def create_batch(
    admission: Admission,
    template_name: str,
    items: list[dict[str, Any]],
    *,
    cache: bool = True,
    owner: str | None = None,
) -> tuple[str, list[Job]]:
    """A bad item is a 400 naming its index, and nothing is queued."""
    prepared: list[Job] = []
    for index, item in enumerate(items):
        try:
            prepared.append(admission.prepare(template_name, item, owner=owner))
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"item {index}: {exc.message}", {**exc.details, "index": index}
            ) from None
    hits: list[CacheHit | None] = []
    try:
        for job in prepared:
            hits.append(admission.cached(job) if cache else None)
            if hits[-1] is None:
                admission.bind(job)
    except BackendUnavailable:
        for job in prepared:
            admission.outputs.delete_group(job.id)  # the files of the hits so far
        raise
    batch_id = uuid.uuid4().hex
    for index, job in enumerate(prepared):
        job.batch_id, job.batch_index = batch_id, index
    store = admission.store
    store.insert_batch(
        batch_id,
        {
            "id": batch_id,
            "template": template_name,
            "created_at": now(),
            "owner": owner,
            "jobs": [j.id for j in prepared],
        },
    )
    jobs = [
        admission.enqueue(job, cache=cache)
        if hit is None
        else admission.answer_from_cache(job, hit)
        for job, hit in zip(prepared, hits, strict=True)
    ]
    if any(j.id != p.id for j, p in zip(jobs, prepared, strict=True)):
        # A coalesced twin answered an item: record the job that did.
        store.set_batch_jobs(batch_id, [j.id for j in jobs])
    return batch_id, jobs
