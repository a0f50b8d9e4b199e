"""Real servers in child processes, as users run them: `comfygate serve`, and Debian's
``redis-server`` (installed by scripts/setup-test-tools.sh)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from tests.helpers import wait_for

REDIS_SERVER = "redis-server"


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


class RedisServer:
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

        if not wait_for(answers, 10):
            self.stop()
            pytest.fail(f"redis-server did not answer: {(self.workdir / 'redis.log').read_text()}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
