"""Reading request bodies: JSON objects (and multipart forms where images are uploaded), with
the reserved keys split from parameters.

* A JSON route takes ``Content-Type: application/json`` only: anything else is 415
  ``unsupported_media_type``; malformed JSON, or JSON that is not an object, is 400
  ``bad_request``.
* More than ``MAX_JSON_VALUES`` arrays, objects and elements (counted on the raw bytes,
  before parsing) or nesting deeper than ``MAX_JSON_DEPTH`` (measured with an explicit
  stack) is a 400: a hostile body can neither exhaust the stack nor build millions of
  objects. Every non-finite number is a 400 ``bad_request``: ``NaN`` and ``Infinity``
  (which Python's parser takes by default) and numbers too large for a float (``1e999``,
  which it turns into infinity), wherever they are in the body. (The body's size is bounded
  before all that by ``MAX_BODY_MB``: 413.)
* The routes that accept images (generate and jobs, generic and per template) also take
  ``multipart/form-data``: the JSON body in a ``params`` field and/or each key as a form
  field of its own, and image files as file fields named after their parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage

from comfygate.api import engine
from comfygate.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from comfygate.templates import RESERVED_KEYS, Template


def check_json_size(raw: bytes, max_values: int) -> None:
    """400 when ``raw`` may hold more than ``max_values`` arrays, objects and elements:
    counted on the raw bytes (C speed, no parsing), so a body of millions of ``[]`` is
    refused before any of them is built. Brackets and commas inside strings count too: a
    generous limit leaves room for them."""
    values = raw.count(b"[") + raw.count(b"{") + raw.count(b",")
    if values > max_values:
        raise BadRequest(
            f"the JSON body has too many values (limit {max_values})", {"limit": max_values}
        )


def check_json_depth(data: Any, max_depth: int) -> None:
    """400 when parsed JSON nests deeper than ``max_depth``: an explicit stack, no recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(
                f"the JSON body is nested too deeply (limit {max_depth})", {"limit": max_depth}
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


def parse_json_object(raw: bytes | str, what: str = "the body") -> dict[str, Any]:
    settings = engine.settings()
    data_bytes = raw.encode() if isinstance(raw, str) else raw
    check_json_size(data_bytes, settings.max_json_values)
    try:
        # The C parser turns nesting past the interpreter's limit into RecursionError.
        data = json.loads(data_bytes, parse_constant=_no_constant, parse_float=_finite)
    except _NotFinite as exc:
        raise BadRequest(
            f"{what} is not valid JSON: {exc.text[:32]} is not a finite number",
            {"number": exc.text[:32]},
        ) from None
    except (ValueError, RecursionError):
        raise BadRequest(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object")
    check_json_depth(data, settings.max_json_depth)
    return data


class _NotFinite(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's parser accepts them by default)."""
    raise _NotFinite(name)


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent; ``1e999`` overflows to infinity: refused.
    (Integers are exact in Python, and past 4,300 digits the parser refuses them itself.)"""
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def json_object() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            "the body must be JSON with Content-Type: application/json",
            {"content_type": (request.mimetype or "")[:100]},
        )
    return parse_json_object(request.get_data(cache=True))


@dataclass
class Body:
    """A request body: the JSON object (or the form turned into one) and uploaded files."""

    data: dict[str, Any]
    files: dict[str, FileStorage] = field(default_factory=dict)
    # Keys whose values came as text form fields: typed by the template (``type_form``).
    form_keys: frozenset[str] = frozenset()


def read_body() -> Body:
    """A JSON object, or on the image routes a multipart form."""
    if request.mimetype == "multipart/form-data":
        return _multipart()
    return Body(json_object())


def _multipart() -> Body:
    form, files = request.form, request.files
    if not form and not files:
        # Werkzeug skips what it cannot parse: a form with no part is a malformed one.
        raise BadRequest("the multipart body has no fields (send 'params' and/or fields)")
    data: dict[str, Any] = {}
    if "params" in form:
        data = parse_json_object(form["params"], "the 'params' field")
    form_keys = set()
    for key in form:
        if key == "params":
            continue
        values = form.getlist(key)
        if len(values) != 1:
            raise ValidationFailed(f"form field '{key}' is given {len(values)} times", field=key)
        if key in data:
            raise ValidationFailed(
                f"'{key}' is given twice (in 'params' and as a field)", field=key
            )
        data[key] = values[0]
        form_keys.add(key)
    uploads: dict[str, FileStorage] = {}
    for key in files:
        given = files.getlist(key)
        if len(given) != 1:
            raise ValidationFailed(f"file field '{key}' is given {len(given)} times", field=key)
        if key in data:
            raise ValidationFailed(f"'{key}' is given twice (as a file and a value)", field=key)
        uploads[key] = given[0]
    # Reserved keys sent as text are typed here; parameters once the template is known.
    for key in form_keys & {"timeout_s", "cache"}:
        data[key] = _typed(key, data[key], "number" if key == "timeout_s" else "boolean")
    return Body(data, uploads, frozenset(form_keys - {"timeout_s", "cache"}))


def _typed(name: str, text: Any, kind: str) -> Any:
    if not isinstance(text, str):
        return text
    value = text.strip()
    try:
        match kind:
            case "integer":
                return int(value)
            case "number":
                return float(value)
            case "boolean":
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
    except ValueError:
        raise ValidationFailed(f"'{name}' must be a {kind}", field=name) from None
    return text


def type_form(template: Template, body: Body) -> dict[str, Any]:
    """The body's data with text form fields converted to their parameters' types."""
    data = dict(body.data)
    for key in body.form_keys:
        param = template.parameters.get(key)
        if param is not None and param.type in ("integer", "number", "boolean"):
            data[key] = _typed(key, data[key], param.type)
    return data


@dataclass(frozen=True)
class RunRequest:
    template: str
    params: dict[str, Any]
    timeout_s: float | None
    cache: bool
    webhook_url: str | None


def template_name(data: dict[str, Any]) -> str:
    settings = engine.settings()
    template = data.get("template", settings.default_template)
    if not isinstance(template, str) or not template:
        raise ValidationFailed("'template' must be a template name", field="template")
    return template


def timeout_field(data: dict[str, Any]) -> float | None:
    """The reserved ``timeout_s``: absent, or a positive finite number of seconds."""
    timeout = data.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValidationFailed("'timeout_s' must be a positive number", field="timeout_s")
    return None if timeout is None else float(timeout)


def bool_field(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ValidationFailed(f"'{name}' must be true or false", field=name)
    return value


def run_request(data: dict[str, Any]) -> RunRequest:
    template = template_name(data)
    timeout = timeout_field(data)
    cache = bool_field(data, "cache", True)
    webhook = data.get("webhook_url")
    if webhook is not None and not isinstance(webhook, str):
        raise ValidationFailed("'webhook_url' must be a URL", field="webhook_url")
    params = {k: v for k, v in data.items() if k not in RESERVED_KEYS}
    return RunRequest(template, params, timeout, cache, webhook)
