"""Real servers in child processes, as users run them: `comfygate serve`, Debian's
``redis-server``, and s3rver (a real S3 API that checks SigV4 signatures and presigned
urls' expiry: the npm package @20minutes/s3rver in build/test-tools/); the setup of both is
scripts/setup-test-tools.sh."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from tests.helpers import wait_for

REDIS_SERVER = "redis-server"
ROOT = Path(__file__).resolve().parent.parent
S3RVER = ROOT / "build" / "test-tools" / "node_modules" / "@20minutes" / "s3rver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """`comfygate serve` in a child process, as a user runs it. ``env`` adds ``COMFYGATE_*``
    settings (the test's own are dropped)."""

    def __init__(
        self,
        backend: str,
        data_dir: Path,
        log: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = log.open("ab")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("COMFYGATE_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "comfygate",
                "serve",
                "--port",
                str(self.port),
                "--backend",
                backend,
                "--data-dir",
                str(data_dir),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**clean, **(env or {})},
        )

        def ready() -> bool:
            try:
                return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, 30), log.read_text()[-2000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self._log.close()


class _ChildServer:
    """A server in a child process (``proc``), its log in ``workdir``: stopped with SIGKILL,
    as a crash would stop it."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def _wait_up(self, answers: Callable[[], bool], timeout_s: float, name: str, log: str) -> None:
        if not wait_for(answers, timeout_s):
            self.stop()
            pytest.fail(f"{name} did not answer: {(self.workdir / log).read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class RedisServer(_ChildServer):
    """A real ``redis-server`` on a free loopback port, its files in ``workdir``. ``stop()``
    (SIGKILL) then ``start()`` again is a Redis that went away and came back on the same
    port: empty, or, with ``appendonly``, with every write it acknowledged (AOF, fsync on
    every write)."""

    def __init__(
        self, workdir: Path, password: str | None = None, *, appendonly: bool = False
    ) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run `bash scripts/setup-test-tools.sh` "
                "(make test does), or install Debian's redis-server"
            )
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--dir", str(self.workdir)]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        self._wait_up(answers, 10, "redis-server", "redis.log")
        return self


class S3Server(_ChildServer):
    """s3rver, a real S3 API (signatures, presigned urls and their expiry checked), on a free
    loopback port, its objects in ``workdir``; the bucket ``bucket`` exists from the start.
    Its credentials are s3rver's own, S3RVER / S3RVER. ``stop()`` then ``start()`` is an S3
    that went away and came back, on the same port, with the same objects."""

    ACCESS_KEY = "S3RVER"
    SECRET_KEY = "S3RVER"
    REGION = "us-east-1"

    def __init__(self, workdir: Path, bucket: str = "comfygate") -> None:
        node = shutil.which("node")
        if node is None or not (S3RVER / "package.json").exists():
            pytest.fail(
                "s3rver is not installed: run `bash scripts/setup-test-tools.sh` (make test "
                "does; it needs npm)"
            )
        self.node = node
        self.workdir = workdir
        self.bucket = bucket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def aws_env(self) -> dict[str, str]:
        """boto3's chain pointed at this server alone: its keys, a region, no ~/.aws files
        and no instance metadata lookups (no address outside loopback is ever tried)."""
        missing = str(self.workdir / "no-aws-config")
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def gateway_env(self, prefix: str = "") -> dict[str, str]:
        """The environment of a `comfygate serve` keeping its files here (GatewayProcess's
        ``env``)."""
        return {
            **self.aws_env(),
            "COMFYGATE_STORAGE": "s3",
            "COMFYGATE_S3_BUCKET": self.bucket,
            "COMFYGATE_S3_PREFIX": prefix,
            "COMFYGATE_S3_ENDPOINT_URL": self.url,
        }

    def start(self) -> S3Server:
        data = self.workdir / "objects"
        data.mkdir(parents=True, exist_ok=True)
        launcher = Path(__file__).with_name("s3rver.js")
        args = [self.node, str(launcher), str(S3RVER), str(self.port), str(data), self.bucket]
        log = (self.workdir / "s3rver.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            try:
                return requests.get(self.url, timeout=1).status_code > 0
            except requests.RequestException:
                return False

        self._wait_up(answers, 20, "s3rver", "s3rver.log")
        return self
