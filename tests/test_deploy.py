"""The production setup of docs/DEPLOY.md: deploy/nginx.conf run for real (rendered to
loopback ports) in front of a real `comfygate serve`, and the files that cannot run here
(Dockerfile, compose.yaml, the systemd units: no image can be pulled, no systemd runs)
checked statically: every copied path exists, every command is a real entry point that
accepts its arguments, every variable is a setting, the ports are the defaults, and
`systemd-analyze verify` finds nothing in the units. The replicas' Procfile runs for real
in tests/test_deploy_replicas.py."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from comfygate.cli import main
from comfygate.config import Settings
from comfygate.serving import unknown_variables
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.helpers import wait_for
from tests.processes import GatewayProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DEFAULT_PORT = Settings.model_fields["port"].default


# --- nginx, for real ----------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            "nginx is not installed: run `bash scripts/setup-test-tools.sh` (make test does), "
            "or install Debian's nginx"
        )
    return found


def render(text: str, replacements: dict[str, str]) -> str:
    """deploy/nginx.conf with its public ports, addresses and certificate made local; each
    replaced line must be in the file, so the test cannot drift from what it documents."""
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


class Nginx:
    def __init__(self, workdir: Path, upstream_port: int) -> None:
        self.workdir = workdir
        self.https_port, self.http_port = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert, key = workdir / "cert.pem", workdir / "key.pem"
        openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(
            [*openssl, "-keyout", str(key), "-out", str(self.cert), *subject],
            check=True,
            capture_output=True,
        )
        https = self.https_port
        site = render(
            (DEPLOY / "nginx.conf").read_text(),
            {
                "server 127.0.0.1:8288;": f"server 127.0.0.1:{upstream_port};",
                "    listen 80;\n": f"    listen 127.0.0.1:{self.http_port};\n",
                "    listen [::]:80;\n": "",
                "    listen 443 ssl http2;\n": f"    listen 127.0.0.1:{https} ssl http2;\n",
                "    listen [::]:443 ssl http2;\n": "",
                "/etc/letsencrypt/live/gateway.example.com/fullchain.pem": str(self.cert),
                "/etc/letsencrypt/live/gateway.example.com/privkey.pem": str(key),
            },
        )
        (workdir / "comfygate.conf").write_text(site)
        temp = " ".join(
            f"{kind}_temp_path {workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (workdir / "nginx.conf").write_text(
            f"worker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            f"http {{ access_log {workdir / 'access.log'}; {temp}\n"
            f"  include {workdir / 'comfygate.conf'}; }}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        conf = str(self.workdir / "nginx.conf")
        args = [nginx_binary(), "-p", str(self.workdir), "-c", conf, "-e", "stderr"]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.https_port)) == 0

        assert wait_for(listening, 10), (self.workdir / "error.log").read_text()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_nginx_in_front_with_tls_a_sub_path_and_unbuffered_events(tmp_path: Path) -> None:
    nginx_binary()
    with FakeComfyUI() as fake:
        gateway = GatewayProcess(
            fake.url,
            tmp_path / "data",
            tmp_path / "gw.log",
            env={"COMFYGATE_TRUSTED_PROXIES": "1"},
        )
        try:
            with Nginx(tmp_path / "nginx", gateway.port) as proxy, requests.Session() as http:
                http.trust_env = False  # REQUESTS_CA_BUNDLE would replace the verify below
                http.verify = str(proxy.cert)
                origin = f"https://127.0.0.1:{proxy.https_port}"
                base = f"{origin}/comfygate"
                assert http.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
                plain = requests.get(
                    f"http://127.0.0.1:{proxy.http_port}/comfygate/healthz",
                    allow_redirects=False,
                    timeout=10,
                )
                assert plain.status_code == 301
                assert plain.headers["Location"] == "https://127.0.0.1/comfygate/healthz"

                fake.hold()  # the job stays running: its stream must still show its start
                created = http.post(f"{base}/v1/jobs", json={"template": "solid"}, timeout=10)
                assert created.status_code == 202
                job_id = created.json()["id"]
                # The gateway knows its sub-path: its Location works through the proxy.
                assert created.headers["Location"] == f"/comfygate/v1/jobs/{job_id}"
                followed = http.get(origin + created.headers["Location"], timeout=10)
                assert followed.json()["id"] == job_id
                # A browser's POST from the gateway's own page (its public origin) passes the
                # cross-site check through the proxy; another site's is refused.
                own = http.post(
                    f"{base}/v1/jobs", json={"template": "solid"}, headers={"Origin": origin}
                )
                assert own.status_code == 202, own.text
                other = {"Origin": "https://evil.example"}
                assert http.post(f"{base}/v1/jobs", json={}, headers=other).status_code == 403

                with http.get(f"{base}/v1/jobs/{job_id}/events", stream=True, timeout=10) as s:
                    assert s.headers["Content-Type"].startswith("text/event-stream")
                    events = sse_events(s.iter_lines(decode_unicode=True))
                    # Arrives while the job is held: a buffering proxy would keep it (the
                    # read times out after 10 s and the test fails).
                    name, data = next(events)
                    assert (name, data["id"]) == ("status", job_id)
                    assert data["status"] in ("queued", "running")
                    fake.release()
                    names = [name for name, _ in events]
                    assert names[-1] == "done"
        finally:
            gateway.stop()
    log = gateway.log.read_text()
    assert f"path=/v1/jobs/{job_id}/events status=200" in log  # the prefix is not the path


def test_nginx_waits_longer_than_the_gateway() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = re.findall(rf"^\s*{directive} (\d+)s;", conf, re.MULTILINE)
        assert int(value) > Settings.model_fields["request_timeout_s"].default
        assert int(value) > Settings.model_fields["sse_heartbeat_s"].default
    assert re.search(r"^\s*proxy_buffering off;", conf, re.MULTILINE)
    assert "X-Forwarded-Prefix /comfygate" in conf
    toml = tomllib.loads((DEPLOY / "comfygate.toml").read_text())
    assert toml["trusted_proxies"] == 1  # nginx is the one proxy in front


# --- files that cannot run here, checked statically ---------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), args.strip()))
    return stages


def invoke(argv: list[str], env: dict[str, str]) -> str:
    """`comfygate ARGV --print-config` as the image would run it: the arguments parse and
    the settings validate."""
    assert argv[0] == "comfygate"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["comfygate"] == "comfygate.cli:main"
    result = CliRunner().invoke(main, [*argv[1:], "--print-config"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def setting(listing: str, name: str) -> str:
    row = next(line for line in listing.splitlines() if line.split()[0] == name)
    return row.split()[1]


def test_the_dockerfile_copies_what_exists_and_runs_real_commands() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    env: dict[str, str] = {}
    copied: dict[str, str] = {}
    stages = dockerfile_stages()
    assert len(stages) == 2
    for stage in stages:
        for op, args in stage:
            if op == "COPY":
                *sources, dest = args.split()
                for source in sources:
                    assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                    assert source.split("/")[0] not in ignored, f"{source} is in .dockerignore"
                    copied[dest] = source
            elif op == "ENV":
                env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
            elif op == "RUN" and args.startswith("comfygate "):
                verb = args.split()[1:]
                assert CliRunner().invoke(main, [*verb, "--help"]).exit_code == 0, args
            elif op == "EXPOSE":
                assert int(args) == DEFAULT_PORT
            elif op == "HEALTHCHECK":
                assert f"http://127.0.0.1:{DEFAULT_PORT}/healthz" in args
        (cmd,) = [json.loads(args) for op, args in stage if op == "CMD"]
        # Paths the image has because a COPY put them there are read from the repository.
        argv = [str(ROOT / copied[a]) if a in copied else a for a in cmd]
        listing = invoke(argv, {k: v for k, v in env.items() if k.startswith("COMFYGATE_")})
        assert setting(listing, "PORT") == str(DEFAULT_PORT)
        assert setting(listing, "HOST") == "0.0.0.0"
    assert unknown_variables(env) == []
    assert ("RUN", "comfygate comfyui install") in stages[1]


def test_the_compose_file_builds_this_dockerfile_on_the_default_port() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway = compose["services"]["gateway"]
    assert (ROOT / gateway["build"] / "Dockerfile").is_file()
    (port,) = gateway["ports"]
    assert port.rsplit(":", 1)[1] == str(DEFAULT_PORT)
    assert port.startswith("127.0.0.1:")
    env = {k: str(v) for k, v in gateway["environment"].items()}
    assert unknown_variables(env) == []
    volume = gateway["volumes"][0].split(":")[1]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COMFYGATE_DATA_DIR={volume}" in dockerfile
    assert set(gateway["secrets"]) <= set(compose["secrets"])


def test_the_systemd_unit_runs_a_real_command_on_the_documented_settings() -> None:
    unit = (DEPLOY / "comfygate.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    argv = exec_start.split()
    assert argv[0] == "/opt/comfygate/bin/comfygate"
    argv = [
        "comfygate",
        *[str(DEPLOY / "comfygate.toml") if a.endswith(".toml") else a for a in argv[1:]],
    ]
    env_file = (DEPLOY / "comfygate.env").read_text()
    env = dict(re.findall(r"^(COMFYGATE_\w+)=(\S+)$", env_file, re.MULTILINE))
    assert unknown_variables(env) == []
    listing = invoke(argv, env)
    assert setting(listing, "TRUSTED_PROXIES") == "1"
    assert setting(listing, "HOST") == "127.0.0.1"
    assert setting(listing, "WEBHOOK_SECRET") == "***"
    comfyui = (DEPLOY / "comfyui.service").read_text()
    assert "--listen 127.0.0.1 --port 8188" in comfyui  # what comfygate.toml's backend names
    assert "http://127.0.0.1:8188" in (DEPLOY / "comfygate.toml").read_text()


def env_settings(*files: Path) -> dict[str, str]:
    """The ``COMFYGATE_*`` lines of env files, later files winning (as systemd reads them)."""
    env: dict[str, str] = {}
    for path in files:
        env |= dict(re.findall(r"^(COMFYGATE_\w+)=(\S+)$", path.read_text(), re.MULTILINE))
    return env


def test_the_replica_unit_runs_a_real_command_per_port() -> None:
    unit = (DEPLOY / "comfygate-replica@.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    argv = exec_start.replace("%i", "8291").split()
    assert argv[0] == "/opt/comfygate/bin/comfygate"
    argv = [
        "comfygate",
        *[str(DEPLOY / "comfygate.toml") if a.endswith(".toml") else a for a in argv[1:]],
    ]
    # The files it names, in its order: the secrets, the shared replica settings.
    files = re.findall(r"^EnvironmentFile=-?(.+)$", unit, re.MULTILINE)
    assert files == [
        "/etc/comfygate/comfygate.env",
        "/etc/comfygate/replica.env",
        "/etc/comfygate/replica-%i.env",
    ]
    env = env_settings(DEPLOY / "comfygate.env", DEPLOY / "comfygate-replica.env")
    assert unknown_variables(env) == []
    listing = invoke(argv, env)
    assert setting(listing, "PORT") == "8291"
    data_dir = setting(listing, "DATA_DIR")
    assert data_dir == "/var/lib/comfygate/replica-8291"
    # Its own DATA_DIR is the state directory systemd makes and lets it write.
    assert "StateDirectory=comfygate/replica-%i" in unit
    assert "ReadWritePaths=/var/lib/comfygate/replica-%i" in unit
    assert setting(listing, "STORAGE") == "s3"
    assert setting(listing, "TRUSTED_PROXIES") == "1"
    assert setting(listing, "WEBHOOK_SECRET") == "***"
    assert re.search(r"^Restart=always$", unit, re.MULTILINE)


def test_the_replicas_demo_env_names_only_settings() -> None:
    replicas = DEPLOY / "replicas"
    env = env_settings(replicas / "replicas.env")
    assert unknown_variables(env) == []
    assert env["COMFYGATE_STORAGE"] == "s3"
    assert env["COMFYGATE_TRUSTED_PROXIES"] == "1"  # nginx is the one proxy in front
    conf = (replicas / "nginx.conf").read_text()
    assert "server 127.0.0.1:@REPLICA_A_PORT@" in conf
    assert "server 127.0.0.1:@REPLICA_B_PORT@" in conf
    assert re.search(r"^\s*proxy_buffering off;", conf, re.MULTILINE)


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check of each unit (unknown keys, bad values, a template's instance),
    with the programs they start replaced by ones that exist here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is not installed: run `bash scripts/setup-test-tools.sh` "
            "(make test does), or install Debian's systemd"
        )
    programs = {
        "/opt/comfygate/bin/comfygate": shutil.which("comfygate") or "/bin/sh",
        "/opt/ComfyUI/venv/bin/python": "/bin/sh",
    }
    for name, instance in (
        ("comfygate.service", "comfygate.service"),
        ("comfyui.service", "comfyui.service"),
        ("comfygate-replica@.service", "comfygate-replica@8291.service"),
    ):
        text = (DEPLOY / name).read_text()
        for old, new in programs.items():
            text = text.replace(old, new)
        (tmp_path / name).write_text(text)
        checked = subprocess.run(
            [analyze, "verify", "--man=no", str(tmp_path / instance)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), name


def test_the_license_is_the_one_pyproject_names() -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {
        "text": "MIT"
    }
