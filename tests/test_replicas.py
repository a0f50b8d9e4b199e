"""Replicas: real `comfygate serve` processes, each with its own DATA_DIR, sharing nothing but
a real Redis (jobs, queue, leases, events, cache index, keys) and a real S3 API (outputs),
in front of one fake ComfyUI. Any replica accepts a job, answers it, streams it, cancels it
and serves its outputs; a replica killed mid-job has its jobs finished by another, each run
once; Redis stopped and started again loses no job and answers no 500."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.processes import GatewayProcess, RedisServer, S3Server

LEASE_S = 2.0
SOLID = {"template": "solid", "width": 8, "height": 8}


class Cluster:
    def __init__(self, tmp: Path, fake: FakeComfyUI, s3: S3Server, redis_server: RedisServer):
        self.tmp, self.fake, self.s3, self.redis = tmp, fake, s3, redis_server
        self.replicas: list[GatewayProcess] = []
        self.prefix = f"t{time.monotonic_ns()}/"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "COMFYGATE_REDIS_URL": self.redis.url,
            "COMFYGATE_LEASE_S": str(LEASE_S),
            "COMFYGATE_POLL_INTERVAL_S": "0.2",
            "COMFYGATE_LOG_FORMAT": "json",
            **self.s3.gateway_env(self.prefix),
            **extra,
        }

    def start(self, count: int, **extra: str) -> list[GatewayProcess]:
        for _ in range(count):
            n = len(self.replicas)
            self.replicas.append(
                GatewayProcess(
                    self.fake.url,
                    self.tmp / f"replica{n}",
                    self.tmp / f"replica{n}.log",
                    env=self.env(**extra),
                )
            )
        return self.replicas

    def stop(self) -> None:
        for replica in self.replicas:
            if replica.proc.poll() is None:
                replica.stop()
            else:
                replica._log.close()

    def logs(self) -> str:
        return "\n".join(r.log.read_text()[-3000:] for r in self.replicas)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, fake: FakeComfyUI, s3_server: S3Server, redis_server: RedisServer
) -> Iterator[Cluster]:
    made = Cluster(tmp_path, fake, s3_server, redis_server)
    yield made
    fake.release()
    made.stop()


def job_of(replica: GatewayProcess, job_id: str) -> dict[str, Any]:
    resp = requests.get(f"{replica.url}/v1/jobs/{job_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def submit(replica: GatewayProcess, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    resp = requests.post(f"{replica.url}/v1/jobs", json=body, headers=headers, timeout=10)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def ended(replica: GatewayProcess, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(job_of(replica, job_id))
        return seen["status"] in ("succeeded", "failed", "cancelled")

    assert wait_for(done, timeout_s, step_s=0.1), seen
    return seen


def test_submitted_to_a_streamed_from_b_cancelled_from_c(
    cluster: Cluster, fake: FakeComfyUI
) -> None:
    a, b, c = cluster.start(3)
    fake.hold()
    job = submit(a, {**SOLID, "color": 1})
    events: list[tuple[str, dict[str, Any]]] = []

    def stream() -> None:
        with requests.get(f"{b.url}/v1/jobs/{job['id']}/events", stream=True, timeout=30) as r:
            name = ""
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name == "done":
                        return

    reader = threading.Thread(target=stream)
    reader.start()
    assert wait_for(lambda: bool(events))  # B streams a job A accepted
    assert events[0][0] == "status"
    assert wait_for(lambda: len(fake.submissions) == 1)
    resp = requests.delete(f"{c.url}/v1/jobs/{job['id']}", timeout=10)
    assert resp.status_code == 200, resp.text
    reader.join(20)
    assert events[-1][0] == "done"
    assert events[-1][1]["status"] == "cancelled"
    assert job_of(a, job["id"])["status"] == "cancelled"
    fake.release()
    assert wait_for(lambda: fake.queue_remaining == 0)  # taken out of ComfyUI's queue too


def test_thirty_jobs_on_three_replicas_run_thirty_times(
    cluster: Cluster, fake: FakeComfyUI
) -> None:
    replicas = cluster.start(3)
    with ThreadPoolExecutor(10) as pool:
        jobs = list(
            pool.map(
                lambda i: submit(replicas[i % 3], {**SOLID, "color": i}),
                range(30),
            )
        )
    for i, job in enumerate(jobs):
        assert ended(replicas[(i + 1) % 3], job["id"])["status"] == "succeeded"
    prompts = [s["prompt_id"] for s in fake.submissions]
    assert len(prompts) == 30
    assert len(set(prompts)) == 30
    holders = {s["client_id"] for s in fake.submissions}
    assert len(holders) >= 2  # the claims spread over the replicas
    listed = requests.get(f"{replicas[2].url}/v1/jobs?limit=200", timeout=10).json()["jobs"]
    assert {j["id"] for j in jobs} <= {j["id"] for j in listed}


def test_idempotency_keys_and_cache_hits_hold_across_replicas(
    cluster: Cluster, fake: FakeComfyUI
) -> None:
    a, b = cluster.start(2)
    first = submit(a, {**SOLID, "color": 7}, **{"Idempotency-Key": "order-7"})
    again = submit(b, {**SOLID, "color": 7}, **{"Idempotency-Key": "order-7"})
    assert again["id"] == first["id"]
    other = requests.post(
        f"{b.url}/v1/jobs",
        json={**SOLID, "color": 8},
        headers={"Idempotency-Key": "order-7"},
        timeout=10,
    )
    assert other.status_code == 409
    seeded = {**SOLID, "color": 9}  # solid has no seed: its result is determined, cacheable
    one = requests.post(f"{a.url}/v1/generate", json=seeded, timeout=30)
    assert one.status_code == 200
    runs = len(fake.submissions)
    two = requests.post(f"{b.url}/v1/generate", json=seeded, timeout=30)
    assert two.status_code == 200
    assert two.content == one.content
    assert len(fake.submissions) == runs  # B answered from the cache A filled
    assert job_of(a, two.headers["X-Job-Id"])["cached"] is True


def test_outputs_in_s3_are_served_by_any_replica(cluster: Cluster, fake: FakeComfyUI) -> None:
    a, b = cluster.start(2)
    job = ended(b, submit(a, {**SOLID, "color": 3})["id"])
    [output] = job["outputs"]
    got = [requests.get(f"{r.url}{output['url']}", timeout=10) for r in (a, b)]
    assert [g.status_code for g in got] == [200, 200]
    assert got[0].content == got[1].content
    assert got[0].headers["Content-Type"] == "image/png"
    assert int(got[0].headers["Content-Length"]) == output["size"]
    # The bytes are in the bucket, not on a replica's disk.
    assert not list((cluster.tmp / "replica0").rglob("*.png"))


def test_a_presigned_url_works_then_expires(cluster: Cluster, fake: FakeComfyUI) -> None:
    [a] = cluster.start(1, COMFYGATE_OUTPUT_URLS="presigned", COMFYGATE_PRESIGN_EXPIRES_S="2")
    job = ended(a, submit(a, {**SOLID, "color": 4})["id"])
    url = job["outputs"][0]["url"]
    assert url.startswith(cluster.s3.url)
    fresh = requests.get(url, timeout=10)
    assert fresh.status_code == 200
    assert fresh.content.startswith(b"\x89PNG")
    assert wait_for(lambda: requests.get(url, timeout=10).status_code == 403, 10, step_s=0.5)


def test_a_replica_killed_mid_job_has_its_jobs_finished_by_another_each_once(
    cluster: Cluster, fake: FakeComfyUI
) -> None:
    a, b = cluster.start(2, COMFYGATE_MAX_IN_FLIGHT_PER_BACKEND="8")
    fake.hold()  # nothing starts: the jobs stay submitted on ComfyUI
    jobs = [submit(a, {**SOLID, "color": 20 + i}) for i in range(6)]
    assert wait_for(lambda: len(fake.submissions) == 6, 20)
    a_id = (cluster.tmp / "replica0" / "client-id").read_text().strip()
    by_a = {s["prompt_id"] for s in fake.submissions if s["client_id"] == a_id}
    assert by_a  # A sent some of them: those B must take over
    a.kill()  # SIGKILL: its leases are no longer renewed
    fake.release()
    for job in jobs:
        assert ended(b, job["id"], timeout_s=30)["status"] == "succeeded"
    assert len(fake.submissions) == 6  # none sent twice
    assert len({s["prompt_id"] for s in fake.submissions}) == 6
    assert all(job_of(b, j["id"])["attempts"] == 1 for j in jobs)


def test_redis_stopped_and_restarted_loses_no_job_and_answers_no_500(
    cluster: Cluster, fake: FakeComfyUI, redis_server: RedisServer
) -> None:
    a, b = cluster.start(2)
    done = ended(a, submit(a, {**SOLID, "color": 30})["id"])
    fake.hold()
    waiting = submit(b, {**SOLID, "color": 31})
    assert wait_for(lambda: len(fake.submissions) == 2)
    redis_server.stop()
    statuses: list[int] = []
    for replica in (a, b):
        statuses.append(requests.get(f"{replica.url}/readyz", timeout=10).status_code)
        resp = requests.post(f"{replica.url}/v1/jobs", json={**SOLID, "color": 32}, timeout=10)
        statuses.append(resp.status_code)
        assert resp.headers.get("Retry-After")
        assert resp.json()["error"]["code"] == "backend_unavailable"
        read = requests.get(f"{replica.url}/v1/jobs/{done['id']}", timeout=10)
        statuses.append(read.status_code)
    assert set(statuses) == {503}  # never a 500
    redis_server.start()  # the same port, its AOF replayed
    fake.release()
    assert ended(a, waiting["id"])["status"] == "succeeded"
    assert job_of(b, done["id"])["status"] == "succeeded"
    assert ended(b, submit(b, {**SOLID, "color": 33})["id"])["status"] == "succeeded"
    assert wait_for(lambda: all(requests.get(f"{r.url}/readyz", timeout=10).ok for r in (a, b)))
