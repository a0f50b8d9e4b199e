"""The one way from ``api/`` into the gateway's parts, typed: the views call these instead of
looking into ``current_app.extensions``, so mypy checks every call from the HTTP layer into
``jobs/``, ``backends/`` and ``templates/``."""

from __future__ import annotations

from typing import cast

from flask import current_app

from comfygate.backends.pool import BackendPool
from comfygate.config import Settings
from comfygate.errors import BackendUnavailable
from comfygate.gateway import Gateway
from comfygate.jobs.engine import JobEngine
from comfygate.storage.base import OutputStorage
from comfygate.templates import TemplateRegistry

EXTENSION = "comfygate"


def gateway() -> Gateway:
    return cast(Gateway, current_app.extensions[EXTENSION])


def settings() -> Settings:
    return gateway().settings


def storage() -> OutputStorage:
    """The outputs' storage: views read files through its interface, never a path."""
    return gateway().storage


def templates() -> TemplateRegistry:
    return gateway().templates


def jobs() -> JobEngine:
    found = gateway().jobs
    if found is None:  # an app made with start=False
        raise BackendUnavailable("the gateway has not started")
    return found


def pool() -> BackendPool:
    found = gateway().pool
    if found is None:
        raise BackendUnavailable("the gateway has not started")
    return found
