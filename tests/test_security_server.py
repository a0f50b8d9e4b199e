"""What the server itself must hold against one greedy or hostile client (issue 15 items 3-5),
shown on a real `comfygate serve` over real sockets:

* waiting requests and event streams are capped per key, and in all below the thread count,
  so ``/healthz`` keeps answering;
* connections that send nothing are closed after ``IDLE_TIMEOUT_S``, while a long
  generation is not cut;
* a body over ``MAX_BODY_MB`` is refused from its ``Content-Length``, before it is sent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.processes import GatewayProcess

A = "key-a-0123456789abcdef0123"
B = "key-b-0123456789abcdef0123"
C = "key-c-0123456789abcdef0123"
SOLID = {"template": "solid", "width": 8, "height": 8, "cache": False}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def gateway(
    tmp_path: Path, fake: FakeComfyUI, request: pytest.FixtureRequest
) -> Iterator[GatewayProcess]:
    env: dict[str, str] = getattr(request, "param", {})
    proc = GatewayProcess(fake.url, tmp_path / "data", tmp_path / "gw.log", env=env)
    yield proc
    proc.stop()


def healthz(gateway: GatewayProcess, timeout: float = 10) -> int:
    return requests.get(f"{gateway.url}/healthz", timeout=timeout).status_code


class Stream:
    """An open event stream, read in a thread (so its server thread stays held)."""

    def __init__(self, gateway: GatewayProcess, job_id: str, key: str) -> None:
        self.resp = requests.get(
            f"{gateway.url}/v1/jobs/{job_id}/events", headers=auth(key), stream=True, timeout=30
        )
        self.status = self.resp.status_code

    def close(self) -> None:
        self.resp.close()


WAITS = {
    "COMFYGATE_API_KEYS": f"{A},{B},{C}",
    "COMFYGATE_THREADS": "8",  # 7 for waits, 1 kept for the quick routes
    "COMFYGATE_MAX_WAITS_PER_CLIENT": "3",
    "COMFYGATE_SSE_HEARTBEAT_S": "0.2",  # a closed stream is noticed at the next write
}


@pytest.mark.parametrize("gateway", [WAITS], indirect=True)
def test_waits_are_capped_per_key_and_in_all(gateway: GatewayProcess, fake: FakeComfyUI) -> None:
    fake.hold()  # every job stays queued: every wait holds its thread
    job = requests.post(f"{gateway.url}/v1/jobs", json=SOLID, headers=auth(A), timeout=10).json()
    streams = [Stream(gateway, job["id"], A) for _ in range(2)]
    results: list[int] = []
    waiting = threading.Thread(
        target=lambda: results.append(
            requests.post(
                f"{gateway.url}/v1/generate", json=SOLID, headers=auth(A), timeout=60
            ).status_code
        )
    )
    waiting.start()
    try:
        assert [s.status for s in streams] == [200, 200]
        assert wait_for(lambda: len(fake.submissions) == 2)  # the generate's job: it waits
        # Two streams and a synchronous wait: A's fourth wait is refused, by key.
        fourth = Stream(gateway, job["id"], A)
        assert fourth.status == 429
        over = requests.post(f"{gateway.url}/v1/generate", json=SOLID, headers=auth(A), timeout=10)
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "rate_limited"
        assert over.headers["Retry-After"] == "1"
        # Other keys still get theirs, up to what the server holds in all (7 of 8 threads).
        job_b = requests.post(f"{gateway.url}/v1/jobs", json=SOLID, headers=auth(B), timeout=10)
        others = [Stream(gateway, job_b.json()["id"], B) for _ in range(3)]
        job_c = requests.post(f"{gateway.url}/v1/jobs", json=SOLID, headers=auth(C), timeout=10)
        others.append(Stream(gateway, job_c.json()["id"], C))
        assert [s.status for s in others] == [200, 200, 200, 200]
        full = requests.get(
            f"{gateway.url}/v1/jobs/{job_c.json()['id']}/events", headers=auth(C), timeout=10
        )
        assert full.status_code == 503
        assert full.json()["error"]["code"] == "backend_unavailable"
        assert "Retry-After" in full.headers
        # The thread kept free answers the quick routes.
        assert healthz(gateway) == 200
        assert requests.get(f"{gateway.url}/readyz", timeout=10).status_code == 200
        # A stream that ends gives its slot back.
        streams[0].close()
        assert wait_for(lambda: Stream(gateway, job["id"], A).status == 200, 10)
        for s in others:
            s.close()
    finally:
        fake.release()
        waiting.join(60)
        for s in streams:
            s.close()
    assert results == [200]


@pytest.mark.parametrize(
    "gateway", [{"COMFYGATE_THREADS": "4", "COMFYGATE_IDLE_TIMEOUT_S": "1"}], indirect=True
)
def test_silent_connections_do_not_lock_everyone_out(
    gateway: GatewayProcess, fake: FakeComfyUI
) -> None:
    """The probe: 110 silent TCP connections to a 4-thread gateway (a limit of 104) made
    /healthz time out for the 330 s waitress kept them."""
    silent = [socket.create_connection(("127.0.0.1", gateway.port), timeout=5) for _ in range(110)]
    try:
        assert healthz(gateway, timeout=30) == 200
        # The gateway closed the silent ones: each reads end-of-file.
        assert wait_for(lambda: all(_closed(s) for s in silent), 30)
    finally:
        for s in silent:
            s.close()
    # A generation that outlasts the idle timeout is not cut.
    fake.service_time_s = 2.5
    resp = requests.post(f"{gateway.url}/v1/generate", json={**SOLID, "color": 7}, timeout=60)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/png"


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


@pytest.mark.parametrize("gateway", [{"COMFYGATE_MAX_BODY_MB": "1"}], indirect=True)
def test_an_oversized_body_is_refused_from_its_header(gateway: GatewayProcess) -> None:
    """Content-Length of 25 MiB and no body: the answer comes at once, in the API's shape."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 26214400\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"Content-Type: application/json" in head
    error = json.loads(payload)["error"]
    assert error["code"] == "payload_too_large"
    assert "MAX_BODY_MB" in error["message"]
    # A body within the limit still goes through.
    ok = requests.post(f"{gateway.url}/v1/generate", json=SOLID, timeout=30)
    assert ok.status_code == 200
