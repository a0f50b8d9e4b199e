"""The owner of everything that runs in the background.

``Gateway`` builds the parts from the settings (store, storage, templates, the local ComfyUI
when wanted, the backend pool, the job service), starts them in order and stops them in
reverse, so a test can start a gateway, stop it, and leave no thread or process behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from typing import IO

import redis

from comfygate import redisconn
from comfygate.backends.backend import parse_backend
from comfygate.backends.pool import BackendPool
from comfygate.comfy.folders import LocalFolders
from comfygate.comfy.local import LocalComfyUI, LocalComfyUIConfig
from comfygate.config import ConfigError, Settings
from comfygate.config_load import prepare_data_dir
from comfygate.egress import EgressPolicy
from comfygate.jobs.bus import open_bus
from comfygate.jobs.engine import EngineOptions, JobEngine
from comfygate.jobs.redis_store import RedisJobStore
from comfygate.jobs.sqlite_store import SQLiteJobStore
from comfygate.jobs.store import JobStore
from comfygate.jobs.webhooks import WebhookOptions, load_or_create_secret
from comfygate.metrics import Metrics
from comfygate.storage.resolve import open_storage
from comfygate.templates import TemplateRegistry
from comfygate.templates.limits import CostLimits

log = logging.getLogger(__name__)

LOCAL_BACKEND = "local"  # the managed local ComfyUI's name in the pool


def claim_data_dir(data_dir: Path) -> IO[str]:
    """An exclusive claim on DATA_DIR for this process, held until the returned file is
    closed (or the process ends, however it ends). Two gateways on one DATA_DIR would both
    take back its unfinished jobs and share one ComfyUI client id, so each would submit jobs
    twice and take the other's websocket events: the second one refuses to start."""
    path = data_dir / "gateway.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(
            f"DATA_DIR {data_dir} is in use by another running gateway (pid {holder}); "
            "give each gateway its own DATA_DIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def open_store(settings: Settings, data_dir: Path, client: redis.Redis | None) -> JobStore:
    """The job store the settings name: Redis (shared by replicas) when ``REDIS_URL`` is set,
    else the embedded SQLite file in DATA_DIR."""
    if client is not None:
        return RedisJobStore(client, settings.redis_prefix, settings.job_retention_s)
    return SQLiteJobStore(data_dir / "jobs.sqlite3")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir: Path = prepare_data_dir(settings)
        self.templates = TemplateRegistry.load(settings.templates_dir, settings.template_defaults)
        self.local: LocalComfyUI | None = None
        if settings.uses_local_comfyui:
            models = settings.resolved_models_dir.expanduser().resolve()
            models.mkdir(parents=True, exist_ok=True)
            (models / "checkpoints").mkdir(exist_ok=True)
            bundled = settings.comfyui_home / "models"
            self.local = LocalComfyUI(
                LocalComfyUIConfig(
                    home=settings.comfyui_home,
                    base_dir=self.data_dir / "comfyui",
                    models_dirs=[models, bundled] if bundled.is_dir() else [models],
                    extra_model_paths=settings.extra_model_paths,
                )
            )
        # One Redis client (a connection pool) for the store and the bus, when REDIS_URL is set.
        self.redis = (
            # Every request thread may use Redis at once, and the engine's threads beside them.
            redisconn.connect(settings.redis_url, max_connections=settings.threads + 64)
            if settings.redis_url
            else None
        )
        self.store = open_store(settings, self.data_dir, self.redis)
        # Outputs (and cached results, under their key) and the jobs' input images: local
        # directories in DATA_DIR, or an S3 bucket the replicas share (STORAGE).
        self.storage = open_storage(settings, "outputs")
        self.inputs = open_storage(settings, "inputs")
        self.bus = open_bus(settings, self.redis)
        self.metrics = Metrics()
        self.pool: BackendPool | None = None
        self.jobs: JobEngine | None = None
        self._lock: IO[str] | None = None
        self.started = False

    def start(self) -> None:
        self._lock = claim_data_dir(self.data_dir)
        specs = list(self.settings.backends)
        folders = self._backend_folders(specs)
        if self.local is not None:
            log.info("starting the local ComfyUI (first start takes a few seconds)")
            url = self.local.start()
            self.local.watch()
            specs.append(f"{LOCAL_BACKEND}={url}")
        client_id = self._client_id()
        self.pool = BackendPool(
            specs,
            connect_timeout_s=self.settings.connect_timeout_s,
            read_timeout_s=self.settings.read_timeout_s,
            max_in_flight=self.settings.max_in_flight_per_backend,
            client_id=client_id,
            routing=self.settings.routing,
        )
        self.jobs = JobEngine(
            self.store,
            self.pool,
            self.storage,
            self.inputs,
            self.templates,
            # The holder of this process's leases is its ComfyUI client id: ComfyUI sends
            # the events of the prompts it submits to that id, after a restart too.
            holder=client_id,
            options=EngineOptions(
                poll_interval_s=self.settings.poll_interval_s,
                job_deadline_s=self.settings.job_deadline_s,
                max_attempts=self.settings.max_attempts,
                retention_s=self.settings.job_retention_s,
                lease_s=self.settings.lease_s,
                limits=CostLimits(
                    max_pixels=self.settings.max_pixels,
                    max_steps=self.settings.max_steps,
                    max_batch_size=self.settings.max_batch_size,
                    max_prompt_chars=self.settings.max_prompt_chars,
                ),
            ),
            webhooks=WebhookOptions(
                secret=load_or_create_secret(self.settings.webhook_secret, self.data_dir),
                max_attempts=self.settings.webhook_max_attempts,
                backoff_s=self.settings.webhook_backoff_s,
                timeout_s=self.settings.webhook_timeout_s,
                policy=EgressPolicy(
                    allow_http=True, allow_private=self.settings.webhook_allow_private
                ),
            ),
            metrics=self.metrics,
            bus=self.bus,
            cache_max_bytes=int(self.settings.cache_max_mb * 1024 * 1024),
            local_folders=folders,
        )
        pool = self.pool
        self.metrics.watch_pool(
            lambda: [b.status() for b in pool.backends.values()], self.jobs.waiting
        )
        self.pool.start()
        self.jobs.start()
        self.started = True
        log.info("gateway started with %d backend(s)", len(specs))
        for backend in self.pool.backends.values():
            if not backend.usable:
                # Probed once already (pool.start): say so now, not at the first job.
                log.warning(
                    "backend %s does not answer at start (%s); it gets no jobs until it does",
                    backend.name,
                    backend.last_error or "no answer",
                    extra={"backend": backend.name},
                )

    def _backend_folders(self, specs: list[str]) -> dict[str, LocalFolders]:
        """The folders of the backends on this host, by name: the managed local ComfyUI's
        and those ``BACKEND_DIRS`` names (each must be a backend ``BACKENDS`` names)."""
        names = [parse_backend(spec, index)[0] for index, spec in enumerate(specs, 1)]
        folders: dict[str, LocalFolders] = {}
        for name, path in self.settings.backend_dir_map.items():
            if name not in names:
                raise ConfigError(
                    f"BACKEND_DIRS names {name!r}, which is no backend in BACKENDS "
                    f"(their names: {', '.join(names) or 'none'})"
                )
            folders[name] = LocalFolders(path)
        if self.local is not None:
            folders[LOCAL_BACKEND] = LocalFolders(self.local.base_dir)
        return folders

    def _client_id(self) -> str:
        """The id this gateway gives ComfyUI, kept in DATA_DIR so it survives restarts."""
        path = self.data_dir / "client-id"
        if path.is_file():
            value = path.read_text().strip()
            if value.isalnum():
                return value
        value = uuid.uuid4().hex
        path.write_text(value + "\n")
        return value

    def stopping(self) -> None:
        """The first step of a stop, before the server waits for its requests: requests
        waiting on jobs answer 503 (the jobs go on) and event streams end."""
        if self.jobs is not None:
            self.jobs.events.close()

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        if self.pool is not None:
            self.pool.stop()
        if self.local is not None:
            self.local.stop()
        self.bus.close()
        self.store.close()
        if self.redis is not None:
            self.redis.close()
        if self._lock is not None:
            self._lock.close()  # releases the claim on DATA_DIR
            self._lock = None
        if self.started:
            log.info("gateway stopped")
        self.started = False
