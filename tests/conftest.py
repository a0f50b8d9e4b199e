"""Shared fixtures: a clean environment, a fake ComfyUI, and gateways built on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from comfygate.app import create_app
from comfygate.gateway import Gateway

if TYPE_CHECKING:
    from comfygate.testing.fake_comfyui import FakeComfyUI
    from tests.processes import S3Server

pytest_plugins = ["tests.real_comfyui"]

MakeApp = Callable[..., Flask]


def body(resp: Any) -> Any:
    """A test response's JSON body (fails the test if it is not JSON)."""
    data = resp.get_json(silent=True)
    assert data is not None, f"not JSON: {resp.status_code} {resp.get_data(as_text=True)[:200]}"
    return data


class BufferedClient(FlaskClient):
    """Reads every response whole and closes it, so file responses leave no open file."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("COMFYGATE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3 API (s3rver) for the session; tests keep apart by key prefix. A test
    that stops its S3 starts an ``S3Server`` of its own."""
    from tests.processes import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """``s3_server``, with boto3's chain in this process pointed at it alone."""
    for key, value in s3_server.aws_env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    from comfygate.testing.fake_comfyui import FakeComfyUI

    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """Build gateways (started) on the given backends; all are stopped at the end."""
    gateways: list[Gateway] = []

    def _make(backends: list[str], **overrides: Any) -> Flask:
        settings: dict[str, Any] = {
            "backends": backends,
            "data_dir": str(tmp_path / f"data{len(gateways)}"),
            "poll_interval_s": 0.2,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 5.0,
        }
        settings.update(overrides)
        app = create_app(settings, configure_logging=False)
        app.test_client_class = BufferedClient
        gateways.append(app.extensions["comfygate"])
        return app

    yield _make
    for gateway in gateways:
        gateway.stop()


@pytest.fixture
def app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    return make_app([fake.url])


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
