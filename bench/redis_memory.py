"""Redis memory per 10^6 jobs: what to give the Redis of a replicated gateway.

Starts a private ``redis-server`` (no persistence) on a loopback port, writes N finished
txt2img jobs through ``RedisJobStore`` as the gateway leaves them (the bound graph, the
resolved parameters with a 200-character prompt, an owner, one output, a cache key, a
prompt id; inserted, then swapped to ``succeeded``, so every index a finished job is in is
filled), reads ``used_memory`` from ``INFO memory`` before and after, and extrapolates.

    .venv/bin/python -m bench.redis_memory            # 20,000 jobs
    .venv/bin/python -m bench.redis_memory --jobs 2000
"""

from __future__ import annotations

import argparse
import json
import uuid

from bench.common import RedisServer, work_dir
from comfygate.jobs.model import Job, JobStatus, Output
from comfygate.jobs.redis_store import RedisJobStore
from comfygate.templates.binding import bind, resolve_params
from comfygate.templates.registry import TemplateRegistry

PROMPT = (
    "a lighthouse on a rocky headland at dusk, waves breaking below, warm light in the "
    "lantern room, dramatic clouds, volumetric light, highly detailed, 35mm photograph, "
    "golden hour, sharp focus"
)


def finished_job(n: int, template_graph: dict[str, object], params: dict[str, object]) -> Job:
    created = 1_800_000_000.0 + n
    job = Job(
        template="txt2img",
        params={**params, "seed": 1_000_000_007 * n % 2**48},
        graph=template_graph,
        created_at=created,
        owner=uuid.uuid4().hex + uuid.uuid4().hex[:32],  # a hash of the API key, 64 hex
        backend="backend-1",
        prompt_id=str(uuid.uuid4()),
        cache_key=uuid.uuid4().hex + uuid.uuid4().hex,
    )
    job.attempts, job.submitted_at, job.started_at = 1, created + 0.1, created + 0.2
    job.outputs = [Output(f"{job.id}-9-0.png", "image/png", 412_345, "9")]
    return job


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=20_000)
    args = p.parse_args()

    template = TemplateRegistry.load().get("txt2img")
    values = resolve_params(
        template, {"prompt": PROMPT}, model_choices={"checkpoints": ["sd15.safetensors"]}
    )
    graph = bind(template, values, "job-output")
    with work_dir("redis-memory") as wd, RedisServer(wd) as server:
        client = server.start().client()
        store = RedisJobStore(client)
        store.ping()
        before = int(client.info("memory")["used_memory"])
        record = 0
        for n in range(args.jobs):
            job = finished_job(n, graph, values)
            store.insert(job)
            job.status, job.finished_at = JobStatus.SUCCEEDED, job.created_at + 30
            assert store.swap(job, job.version)
            record = len(json.dumps(job.to_record(), separators=(",", ":")))
        after = int(client.info("memory")["used_memory"])
        store.close()
    per_job = (after - before) / args.jobs
    print(f"jobs written: {args.jobs} finished txt2img jobs (record JSON {record} bytes each)")
    print(f"used_memory: {before} -> {after} bytes: {per_job:.0f} bytes a job")
    print(f"per 10^6 jobs: {per_job * 1e6 / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
