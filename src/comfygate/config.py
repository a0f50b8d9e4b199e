"""Settings: defaults, then a TOML file, then ``COMFYGATE_*`` environment, then CLI flags.

Validated once, at start, by one pydantic model: a bad setting stops the gateway with a single
line that names the setting, never a traceback on the first request. Every default lives here
with a line saying what it is for. Knows nothing of Flask. Reading the sources is
``config_load``'s.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

ENV_PREFIX = "COMFYGATE_"


def is_loopback(host: str) -> bool:
    """Whether HOST listens on loopback only (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConfigError(Exception):
    """A setting is wrong; the message is one line a user can act on."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], BeforeValidator(_split_csv)]
# An ALLOWED_HOSTS entry: a name, an IPv4 address or a bracketed IPv6 one, a leading '.' for
# every subdomain; no port (any port is answered).
_HOST_PATTERN = re.compile(r"\.?[a-z0-9_.-]+|\[[0-9a-f:.]+\]", re.IGNORECASE)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where ComfyUI lives. Unset: run the local CPU ComfyUI the setup installed.
    backends: CsvList = Field(default_factory=list, description="ComfyUI base URLs")
    local_comfyui: bool = Field(False, description="also run the managed local ComfyUI")
    backend_dirs: CsvList = Field(
        default_factory=list,
        description="name=path: the ComfyUI base directory (output/, input/) of a backend on "
        "this host; its outputs are taken from the disk, not /view, and its job files removed",
    )
    comfyui_home: Path = Field(
        Path.home() / ".cache" / "comfygate" / "comfyui",
        description="where `comfygate comfyui install` installed the local ComfyUI",
    )
    models_dir: Path | None = Field(
        None,
        description="models in ComfyUI's layout (checkpoints/, loras/...) for the local "
        "ComfyUI; default DATA_DIR/models",
    )
    extra_model_paths: Path | None = Field(
        None, description="a ComfyUI extra_model_paths.yaml passed to the local ComfyUI"
    )

    # Where the gateway listens. 8288, never ComfyUI's 8188.
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8288, ge=1, le=65535, description="port to listen on")
    # Every waiting request and event stream holds a thread, and waits may take all but a
    # reserve of 32 (api/waits.py): 1,056 threads give 1,024 waits, so 1,000 waiting clients
    # fit with room for the quick routes (1,024 threads held only 992: docs/BENCHMARKS.md 5).
    threads: int = Field(1056, ge=1, le=10_000, description="WSGI worker threads")

    data_dir: Path = Field(Path("./comfygate-data"), description="database, outputs, cache")
    templates_dir: Path | None = Field(None, description="extra templates")
    template_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-template default overrides, e.g. {txt2img = {steps = 8}} in TOML "
        "or JSON in the environment",
    )
    default_template: str = Field("txt2img", description="used when a request names none")

    request_timeout_s: float = Field(300.0, gt=0, description="longest synchronous wait")
    poll_interval_s: float = Field(1.0, gt=0, description="/history polling when the ws is down")
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP connect to ComfyUI")
    read_timeout_s: float = Field(30.0, gt=0, description="one HTTP read from ComfyUI")
    max_in_flight_per_backend: int = Field(
        2, ge=1, description="jobs handed to one ComfyUI at once; the rest wait in the gateway"
    )
    job_deadline_s: float = Field(
        3600.0, gt=0, description="a job still unfinished after this is failed"
    )
    routing: Literal["least_loaded", "round_robin"] = Field(
        "least_loaded", description="how a job's backend is chosen"
    )
    ready_max_waiting: int = Field(
        1000, ge=0, description="/readyz turns 503 when more jobs than this wait in the gateway"
    )
    expose_backend_urls: bool = Field(
        False, description="show backend URLs in GET /v1/backends (operators only)"
    )
    cache_max_mb: float = Field(
        1024.0, ge=0, description="result cache size; least recently used entries go first"
    )
    max_batch_items: int = Field(100, ge=1, le=10_000, description="items in one batch")
    max_attempts: int = Field(
        3, ge=1, le=20, description="submissions of one job when ComfyUI loses it"
    )
    job_retention_s: float = Field(
        7 * 86400.0, gt=0, description="finished jobs and their outputs are deleted after this"
    )
    lease_s: float = Field(
        15.0,
        ge=1.0,
        le=600.0,
        description="a process's hold on a job it runs, renewed every third of it; a process "
        "that stops renewing (it died) has its jobs taken over by another after this",
    )
    sse_heartbeat_s: float = Field(15.0, gt=0, description="comment line on idle event streams")

    # Where outputs, input images and cached results live (docs/OPERATIONS.md, "Outputs in
    # S3"). S3 credentials and region come from boto3's chain (AWS_ACCESS_KEY_ID...), never
    # from these settings.
    storage: Literal["local", "s3"] = Field(
        "local", description="where outputs live: local (under DATA_DIR) or s3 (any S3 service)"
    )
    s3_bucket: str | None = Field(None, description="the bucket, with STORAGE=s3")
    s3_prefix: str = Field(
        "", description="prepended to every object key (end it with '/' for a folder)"
    )
    s3_endpoint_url: str | None = Field(
        None, description="the S3 endpoint of a service other than AWS's (MinIO, R2...)"
    )
    output_urls: Literal["gateway", "presigned"] = Field(
        "gateway",
        description="gateway: output urls are /v1/outputs/...; presigned: presigned S3 GET "
        "urls (STORAGE=s3)",
    )
    # SigV4 presigned urls last at most 7 days.
    presign_expires_s: int = Field(
        3600, ge=1, le=7 * 86400, description="lifetime of a presigned output url"
    )

    webhook_secret: str | None = Field(
        None,
        description="HMAC-SHA256 key for X-ComfyGate-Signature; default: generated once "
        "and kept in DATA_DIR/webhook-secret",
    )
    webhook_max_attempts: int = Field(5, ge=1, le=50, description="deliveries of one webhook")
    webhook_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles")
    webhook_timeout_s: float = Field(10.0, gt=0, description="one webhook delivery")
    webhook_allow_private: bool = Field(
        False,
        description="allow webhooks to loopback, private, link-local and metadata addresses "
        "(local development); off, they are refused at submit and again at connect time",
    )

    # Security (docs/SECURITY.md). Keys: `key` or `key:scope+scope` (scopes admin, workflows).
    api_keys: CsvList = Field(default_factory=list, description="API keys; unset: open")
    api_keys_file: Path | None = Field(
        None,
        description="API keys, one per line, optionally `key:scope1,scope2`; re-read when "
        "it changes",
    )
    cors_origins: CsvList = Field(default_factory=list, description="allowed CORS origins")
    allowed_hosts: CsvList | None = Field(
        None,
        description="Host header values answered (others: 400); '*' for any; default: "
        "localhost, 127.0.0.1 and [::1] while HOST is loopback (no DNS rebinding), else '*'",
    )
    max_waits_per_client: int = Field(
        100,
        ge=0,
        description="synchronous waits and event streams one key (one address with no keys) "
        "may hold at once; 429 past it; 0: no cap per client",
    )
    auth_failure_limit: str = Field(
        "20/minute",
        description="requests with a wrong API key per client address before 429",
    )
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        description="a connection with no request in progress is closed after this",
    )
    max_body_mb: float = Field(20.0, gt=0, description="larger request bodies get 413")
    max_json_depth: int = Field(64, ge=2, le=10_000, description="nesting of a JSON body")
    max_json_values: int = Field(
        100_000, ge=100, description="arrays, objects and elements in one JSON body"
    )
    rate_limit: str | None = Field(
        None,
        description="requests per API key (per client address with no keys), e.g. "
        "'60/minute' or '10/second;1000/day'; unset: no limit",
    )
    rate_limit_storage_uri: str | None = Field(
        None, description="where rate-limit counters live; default REDIS_URL, else memory://"
    )
    # What one request may cost, applied to parameters by name in every template.
    max_pixels: int | None = Field(None, ge=1, description="width x height (and input images)")
    max_steps: int | None = Field(None, ge=1, description="'steps'")
    max_batch_size: int | None = Field(None, ge=1, description="'batch_size'")
    max_prompt_chars: int | None = Field(
        None, ge=1, description="any parameter named 'prompt' or ending in '_prompt'"
    )
    # Image inputs (parameters of type image).
    max_image_mb: float = Field(10.0, gt=0, description="one input image, decoded")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="width x height of one input image"
    )
    allow_http_image_urls: bool = Field(
        False, description="fetch image URLs over plain http too (https only by default)"
    )
    image_fetch_timeout_s: float = Field(10.0, gt=0, description="fetching one image URL")
    # Raw workflows (POST /v1/workflows/run).
    allow_raw_workflows: bool = Field(
        False, description="with no API keys, allow POST /v1/workflows/run to everyone"
    )
    raw_workflow_nodes: CsvList = Field(
        default_factory=list,
        description="node types a raw workflow may use; unset: the built-in safe list "
        "('default' in the list includes it)",
    )
    redis_url: str | None = Field(
        None,
        description="a Redis server the replicas share (redis://[:password@]host:6379/0, "
        "rediss:// for TLS): jobs, queue, leases, events, cache index, idempotency keys and "
        "rate limits live there",
    )
    redis_prefix: str = Field(
        "comfygate:",
        min_length=1,
        max_length=100,
        pattern=r"^\S+$",
        description="the start of every key and channel the gateway keeps in Redis (so "
        "several deployments can share one Redis)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the least severe level logged"
    )
    # Behind a reverse proxy (docs/DEPLOY.md): X-Forwarded-* are believed only from this many.
    trusted_proxies: int = Field(
        0,
        ge=0,
        le=10,
        description="reverse proxies in front that append to X-Forwarded-For/-Proto/-Host/"
        "-Prefix; 0: those headers are ignored",
    )
    access_log: bool = Field(True, description="one log line per HTTP request")

    @field_validator("backends")
    @classmethod
    def _check_backends(cls, urls: list[str]) -> list[str]:
        for url in urls:
            _, _, address = url.rpartition("=") if "=" in url else ("", "", url)
            parts = urlsplit(address)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8188")
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError as exc:
                raise ValueError(f"{url!r} has an invalid port") from exc
        return urls

    @field_validator("backend_dirs")
    @classmethod
    def _check_backend_dirs(cls, specs: list[str]) -> list[str]:
        for spec in specs:
            name, _, path = spec.partition("=")
            if not name or not path:
                raise ValueError(f"{spec!r} is not name=path (a backend's name in BACKENDS)")
            if not Path(path).expanduser().is_dir():
                raise ValueError(f"{path!r} (backend {name}) is not a directory")
        return specs

    @property
    def backend_dir_map(self) -> dict[str, Path]:
        return {
            name: Path(path).expanduser().resolve()
            for name, _, path in (spec.partition("=") for spec in self.backend_dirs)
        }

    @field_validator("template_defaults", mode="before")
    @classmethod
    def _json_table(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError('must be a JSON object such as {"txt2img": {"steps": 8}}') from exc
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, specs: list[str]) -> list[str]:
        from comfygate.keys import KeySpecError, parse_spec

        for i, spec in enumerate(specs):
            try:
                parse_spec(spec, f"entry {i + 1}")
            except KeySpecError as exc:
                raise ValueError(str(exc)) from None
        return specs

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is None:
            return None
        for host in hosts:
            if host != "*" and not _HOST_PATTERN.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name, IP address or '*'")
        return [host.lower() for host in hosts]

    @field_validator("rate_limit", "auth_failure_limit")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit such as '60/minute' or '10/second;1000/day'"
            ) from None
        return value

    @field_validator("redis_url", "rate_limit_storage_uri")
    @classmethod
    def _check_storage_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        schemes = ("redis", "rediss", "redis+unix", "memory")
        if urlsplit(value).scheme not in schemes:
            raise ValueError(
                "is not a storage URI such as redis://127.0.0.1:6379/0 (schemes: "
                + ", ".join(f"{scheme}://" for scheme in schemes)
                + ")"
            )
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("is not an http(s) URL such as http://127.0.0.1:9000")
        return value

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE=s3 needs S3_BUCKET (env COMFYGATE_S3_BUCKET)")
        if self.output_urls == "presigned" and self.storage != "s3":
            raise ValueError(
                "OUTPUT_URLS=presigned needs STORAGE=s3: local files have no url of their own"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def uses_local_comfyui(self) -> bool:
        return self.local_comfyui or not self.backends

    @property
    def limits_storage_uri(self) -> str:
        return self.rate_limit_storage_uri or self.redis_url or "memory://"

    @property
    def hosts_answered(self) -> list[str]:
        """ALLOWED_HOSTS, or its default for HOST (see the field)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if is_loopback(self.host):
            return ["localhost", "127.0.0.1", "[::1]"]
        return ["*"]

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"
