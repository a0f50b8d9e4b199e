"""Reading request bodies: JSON objects only, with the reserved keys split from parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from comfygate.errors import BadRequest, ValidationFailed
from comfygate.templates import RESERVED_KEYS


def json_object() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest(
            "the body must be JSON with Content-Type: application/json",
            {"content_type": request.content_type or ""},
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@dataclass(frozen=True)
class RunRequest:
    template: str
    params: dict[str, Any]
    timeout_s: float | None
    cache: bool
    webhook_url: str | None


def run_request(data: dict[str, Any]) -> RunRequest:
    settings = current_app.extensions["comfygate"].settings
    template = data.get("template", settings.default_template)
    if not isinstance(template, str) or not template:
        raise ValidationFailed("'template' must be a template name", field="template")
    timeout = data.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValidationFailed("'timeout_s' must be a positive number", field="timeout_s")
    cache = data.get("cache", True)
    if not isinstance(cache, bool):
        raise ValidationFailed("'cache' must be true or false", field="cache")
    webhook = data.get("webhook_url")
    if webhook is not None and not isinstance(webhook, str):
        raise ValidationFailed("'webhook_url' must be a URL", field="webhook_url")
    params = {k: v for k, v in data.items() if k not in RESERVED_KEYS}
    return RunRequest(template, params, None if timeout is None else float(timeout), cache, webhook)
