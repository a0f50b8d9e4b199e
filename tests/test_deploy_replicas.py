"""deploy/replicas/Procfile run as a user runs it (`honcho start -f ... -e ...`, with a copy of
replicas.env whose ports are free loopback ports and whose backend is the fake ComfyUI of this
test): Redis, s3rver, two real `comfygate serve` replicas and nginx in front. Through the load
balancer only: jobs run (each once on ComfyUI), their outputs download, an event stream
arrives unbuffered; a replica stopped with SIGTERM (a roll: the synchronous request waiting on
it answers 503 with its job id) and one SIGKILLed, each while it holds jobs, has those jobs
finished, each sent to ComfyUI once. honcho stops on SIGTERM and leaves nothing running."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.processes import S3RVER, free_port
from tests.test_deploy import nginx_binary, sse_events

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = ROOT / "deploy" / "replicas"
SOLID = {"template": "solid", "width": 8, "height": 8}
IN_FLIGHT = 3  # per replica: six held jobs are three on each


def rendered_env(text: str, values: dict[str, str]) -> str:
    """replicas.env with each of ``values`` in place of its line (which must be there, so the
    test cannot drift from the file it documents)."""
    lines = text.splitlines()
    found = set()
    for i, line in enumerate(lines):
        key = line.partition("=")[0]
        if key in values:
            lines[i] = f"{key}={values[key]}"
            found.add(key)
    assert found == set(values), f"deploy/replicas/replicas.env lacks {set(values) - found}"
    return "\n".join(lines) + "\n"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


class Demo:
    """The Procfile under honcho, in its own session (its children each in their own)."""

    def __init__(self, tmp: Path, fake: FakeComfyUI) -> None:
        if not (S3RVER / "package.json").exists():
            pytest.fail("s3rver is not installed: run `bash scripts/setup-test-tools.sh`")
        self.state = tmp / "state"
        self.ports = {name: free_port() for name in ("LB_PORT", "REPLICA_A_PORT", "REPLICA_B_PORT")}
        self.ports |= {"REDIS_PORT": free_port(), "S3_PORT": free_port()}
        env_file = tmp / "replicas.env"
        env_file.write_text(
            rendered_env(
                (REPLICAS / "replicas.env").read_text(),
                {
                    **{k: str(v) for k, v in self.ports.items()},
                    "STATE_DIR": str(self.state),
                    "GATEWAY": str(Path(sys.executable).with_name("comfygate")),
                    "NGINX_BIN": nginx_binary(),
                    "RESTART_DELAY_S": "1",
                    "COMFYGATE_BACKENDS": f"gpu={fake.url}",
                    "COMFYGATE_LEASE_S": "2",
                    "COMFYGATE_MAX_IN_FLIGHT_PER_BACKEND": str(IN_FLIGHT),
                },
            )
            + "COMFYGATE_POLL_INTERVAL_S=0.2\n"  # a taken-over job is followed on /history
        )
        self.lb = f"http://127.0.0.1:{self.ports['LB_PORT']}"
        self.log = tmp / "honcho.log"
        self._log = self.log.open("wb")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("COMFYGATE_")}
        honcho = Path(sys.executable).with_name("honcho")
        self.proc = subprocess.Popen(
            [str(honcho), "start", "-f", "deploy/replicas/Procfile", "-e", str(env_file)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean,
            start_new_session=True,
        )
        self.gateway_pids: set[int] = set()

    def replica_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'REPLICA_{name.upper()}_PORT']}"

    def replica_pid(self, name: str) -> int | None:
        """The running `comfygate serve` of a replica: its DATA_DIR's gateway.lock says
        (None while a starting one has not written it yet)."""
        text = (self.state / f"replica-{name}" / "gateway.lock").read_text().strip()
        if not text.isdigit():
            return None
        self.gateway_pids.add(int(text))
        return int(text)

    def client_id(self, name: str) -> str:
        return (self.state / f"replica-{name}" / "client-id").read_text().strip()

    def honcho_children(self) -> list[int]:
        return [int(p) for p in re.findall(r"started \(pid=(\d+)\)", self.log.read_text())]

    def ready(self, url: str) -> bool:
        try:
            return requests.get(f"{url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def lb_sends_to(self, name: str) -> bool:
        """One request through the LB, for a path no other request has: did replica
        ``name`` answer it (its access log in honcho's output says)?"""
        path = f"/v1/jobs/probe{uuid.uuid4().hex}"
        requests.get(f"{self.lb}{path}", timeout=10)
        # honcho's lines: "HH:MM:SS replica-a.1 | <the replica's log line>"
        answered = f" replica-{name}.1 "
        return any(
            answered in line and f"path={path} " in line
            for line in self.log.read_text().splitlines()
        )

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> int:
        """SIGTERM to honcho's process group, as Ctrl-C or a service manager would."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(20)

    def cleanup(self) -> None:
        """Whatever is still running after a failure: only the processes this test started."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.honcho_children():  # each the leader of its own session
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        self._log.close()


@pytest.fixture
def demo(tmp_path: Path, fake: FakeComfyUI) -> Iterator[Demo]:
    started = Demo(tmp_path, fake)
    try:
        yield started
    finally:
        fake.release()
        started.cleanup()


def submit(demo: Demo, color: int) -> str:
    resp = requests.post(f"{demo.lb}/v1/jobs", json={**SOLID, "color": color}, timeout=10)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def finished(demo: Demo, job_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        resp = requests.get(f"{demo.lb}/v1/jobs/{job_id}", timeout=10)
        assert resp.status_code == 200, resp.text  # never a 502 while a replica is away
        seen.update(resp.json())
        return seen["status"] in ("succeeded", "failed", "cancelled")

    assert wait_for(done, 30, step_s=0.1), (seen, demo.tail())
    return seen


def job_ids(demo: Demo) -> set[str]:
    listed = requests.get(f"{demo.lb}/v1/jobs?limit=200", timeout=10).json()["jobs"]
    return {job["id"] for job in listed}


def held_then_stopped(demo: Demo, fake: FakeComfyUI, victim: str, sig: signal.Signals) -> None:
    """Six jobs through the LB, three held by each replica on the held ComfyUI, and a
    synchronous generate waiting on ``victim`` itself; ``victim`` gets ``sig`` while it holds
    its three; then every job finishes, each sent to ComfyUI once."""
    before, known = len(fake.submissions), job_ids(demo)
    fake.hold()
    jobs = [submit(demo, 100 + before + i) for i in range(2 * IN_FLIGHT)]
    assert wait_for(lambda: len(fake.submissions) == before + len(jobs), 20), demo.tail()
    victim_id = demo.client_id(victim)
    assert [s["client_id"] for s in fake.submissions[before:]].count(victim_id) == IN_FLIGHT
    with ThreadPoolExecutor(1) as pool:
        url = f"{demo.replica_url(victim)}/v1/generate"
        waiting = pool.submit(requests.post, url, json={**SOLID, "color": 99 + before}, timeout=30)
        assert wait_for(lambda: len(job_ids(demo) - known) == len(jobs) + 1, 10)
        (generated,) = job_ids(demo) - known - set(jobs)
        pid = demo.replica_pid(victim)
        assert pid is not None
        os.kill(pid, sig)
        assert wait_for(lambda: not alive(pid), 15), demo.tail()
        if sig == signal.SIGTERM:  # a graceful stop answers what waits: the job goes on
            answer = waiting.result()
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "backend_unavailable"
            assert answer.json()["error"]["details"]["job_id"] == generated
        else:  # a SIGKILL just drops the connection
            with pytest.raises(requests.ConnectionError):
                waiting.result()
    fake.release()
    for job_id in [*jobs, generated]:
        job = finished(demo, job_id)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
    prompts = [s["prompt_id"] for s in fake.submissions]
    assert len(prompts) == before + len(jobs) + 1  # none sent again by a taker-over
    assert len(set(prompts)) == len(prompts)


def test_the_replicas_procfile_under_honcho(demo: Demo, fake: FakeComfyUI) -> None:
    assert wait_for(lambda: demo.ready(demo.lb), 40), demo.tail()
    for url in (demo.replica_url("a"), demo.replica_url("b")):
        assert wait_for(functools.partial(demo.ready, url), 20), demo.tail()
    for name in ("a", "b"):
        demo.replica_pid(name)  # recorded: it must be gone at the end
        # nginx left out the one that refused connections while it started.
        assert wait_for(functools.partial(demo.lb_sends_to, name), 20, step_s=0.2), demo.tail()

    # An event stream through the LB arrives while its job still runs (unbuffered).
    fake.hold()
    streamed = submit(demo, 1)
    with requests.get(f"{demo.lb}/v1/jobs/{streamed}/events", stream=True, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(resp.iter_lines(decode_unicode=True))
        name, data = next(events)  # a buffering LB would hold it until the job ends
        assert (name, data["id"]) == ("status", streamed)
        assert data["status"] in ("queued", "running")
        fake.release()
        assert [name for name, _ in events][-1] == "done"

    # Jobs run once each; any replica serves their outputs (they are in S3).
    jobs = [streamed] + [submit(demo, 2 + i) for i in range(3)]
    for job_id in jobs:
        job = finished(demo, job_id)
        assert job["status"] == "succeeded", job
        [output] = job["outputs"]
        got = requests.get(f"{demo.lb}{output['url']}", timeout=10)
        assert got.status_code == 200
        assert got.headers["Content-Type"] == "image/png"
        assert int(got.headers["Content-Length"]) == output["size"]
        assert got.content.startswith(b"\x89PNG")
    assert len(fake.submissions) == len(jobs)
    assert not list(demo.state.rglob("*.png"))  # not on a replica's disk: in the bucket

    # A roll: SIGTERM to replica A while it holds jobs; they finish, each once, and A comes
    # back (replica.sh starts it again with the same DATA_DIR).
    stopped = demo.replica_pid("a")
    held_then_stopped(demo, fake, "a", signal.SIGTERM)
    assert wait_for(lambda: demo.replica_pid("a") not in (None, stopped), 20), demo.tail()
    assert wait_for(lambda: demo.ready(demo.replica_url("a")), 20), demo.tail()
    # nginx left A out while it refused connections: roll the next one once A gets traffic.
    assert wait_for(lambda: demo.lb_sends_to("a"), 20, step_s=0.2), demo.tail()

    # A crash: SIGKILL to replica B while it holds jobs; they finish, each once.
    held_then_stopped(demo, fake, "b", signal.SIGKILL)

    children = demo.honcho_children()
    assert demo.stop() == 128 + signal.SIGTERM  # honcho's answer to a SIGTERM
    log = demo.log.read_text()
    assert "sending SIGKILL" not in log  # each process stopped on its SIGTERM, in time
    assert wait_for(lambda: not any(alive(p) for p in [*children, *demo.gateway_pids]), 10), (
        demo.tail()
    )
