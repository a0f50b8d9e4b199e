"""Rate-limit counters in a real Redis (Debian's redis-server, started here): replicas share
one budget per key, a Redis that goes away degrades to per-replica counting (never to no
limit, never to errors) and is used again once it is back, and its password never reaches
the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.processes import GatewayProcess, RedisServer, free_port
from tests.test_security import KEYS, OTHER, USER, bearer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def counters(server: RedisServer) -> list[str]:
    return sorted(key.decode() for key in server.client().scan_iter("*comfygate*"))


def templates(client: FlaskClient, key: str = USER) -> tuple[int, str | None]:
    resp = client.get("/v1/templates", headers=bearer(key))
    return resp.status_code, resp.headers.get("X-RateLimit-Remaining")


def test_replicas_share_one_budget_per_key(
    fake: FakeComfyUI, make_app: MakeApp, redis_server: RedisServer
) -> None:
    settings = {"api_keys": KEYS, "rate_limit": "3/minute", "redis_url": redis_server.url}
    first = make_app([fake.url], **settings).test_client()
    second = make_app([fake.url], **settings).test_client()

    assert templates(first) == (200, "2")
    assert templates(second) == (200, "1")
    assert templates(first) == (200, "0")
    resp = second.get("/v1/templates", headers=bearer(USER))
    assert resp.status_code == 429
    error = body(resp)["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert int(resp.headers["Retry-After"]) == error["details"]["retry_after_s"]
    assert templates(first)[0] == 429
    # Another key has its own budget, on both replicas; the counters are in Redis.
    assert templates(second, OTHER) == (200, "2")
    keys = counters(redis_server)
    assert len(keys) == 2, keys


def test_a_redis_that_goes_away_degrades_to_per_replica_counting_then_comes_back(
    fake: FakeComfyUI,
    make_app: MakeApp,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_app(
        [fake.url], api_keys=KEYS, rate_limit="3/minute", redis_url=redis_server.url
    ).test_client()
    assert templates(client) == (200, "2")
    assert counters(redis_server)

    redis_server.stop()
    with caplog.at_level(logging.WARNING):
        # Still limited (in this replica's memory), and no request fails for it.
        assert [templates(client)[0] for _ in range(4)] == [200, 200, 200, 429]
    assert "falling back to in-memory storage" in caplog.text

    redis_server.start()  # the same address, empty
    assert not counters(redis_server)

    def counted_in_redis_again() -> bool:
        templates(client, OTHER)
        return bool(counters(redis_server))

    # flask-limiter looks at the storage again after 1, 2, 4... s of being down.
    assert wait_for(counted_in_redis_again, 40, step_s=0.5)


def test_an_unreachable_redis_at_start_is_a_warning_and_limits_still_hold(
    fake: FakeComfyUI, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:never-log-me@127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.INFO):
        app = make_app([fake.url], api_keys=KEYS, rate_limit="2/minute", redis_url=url)
        client = app.test_client()
        assert [templates(client)[0] for _ in range(3)] == [200, 200, 429]
    assert "does not answer: counting in memory" in caplog.text
    assert ":***@127.0.0.1" in caplog.text
    assert "never-log-me" not in caplog.text


def test_a_password_protected_redis_and_its_password_stays_out_of_the_log(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret-redis-pass").start()
    try:
        with caplog.at_level(logging.DEBUG):
            client = make_app(
                [fake.url], api_keys=KEYS, rate_limit="3/minute", redis_url=server.url
            ).test_client()
            assert templates(client) == (200, "2")
        assert counters(server)
        assert f"rate-limit counters in redis://:***@127.0.0.1:{server.port}/0" in caplog.text
        assert "s3cret-redis-pass" not in caplog.text
    finally:
        server.stop()


@pytest.mark.slow
def test_two_served_replicas_share_the_limit_over_http(
    fake: FakeComfyUI, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "COMFYGATE_API_KEYS": KEYS,
        "COMFYGATE_RATE_LIMIT": "4/minute",
        "COMFYGATE_REDIS_URL": redis_server.url,
    }
    replicas = [
        GatewayProcess(fake.url, tmp_path / f"data{i}", tmp_path / f"gw{i}.log", env=env)
        for i in range(2)
    ]
    try:
        statuses = []
        for i in range(6):
            resp = requests.post(
                f"{replicas[i % 2].url}/v1/generate",
                json={"template": "solid", "width": 8, "height": 8},
                headers=bearer(USER),
                timeout=30,
            )
            statuses.append(resp.status_code)
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert "rate-limit counters in redis://127.0.0.1" in replicas[0].log.read_text()
    finally:
        for replica in replicas:
            replica.stop()
