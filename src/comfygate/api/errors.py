"""One error handler for the whole app: every error leaves as the JSON body of API.md.

Domain errors carry their status and code; Werkzeug's HTTP errors (unknown route, wrong
method, body too large) are mapped; anything else is a 500 with no traceback in the answer
(it is logged with the request id instead).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from comfygate.errors import ComfyGateError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    resp = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    resp.status_code = status
    return resp


def _domain(exc: ComfyGateError) -> Response:
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    resp = error_response(exc.status, exc.code, exc.message, exc.details)
    resp.headers.update(exc.headers)
    return resp


def _http(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    message = {
        404: "no such route",
        405: "method not allowed on this route",
        413: "request body too large",
    }.get(status, exc.description or exc.name)
    resp = error_response(status, code, message)
    if status == 405 and exc.response is None:
        allow = getattr(exc, "valid_methods", None)
        if allow:
            resp.headers["Allow"] = ", ".join(allow)
    return resp


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the gateway's log")


def init_app(app: Flask) -> None:
    app.register_error_handler(ComfyGateError, _domain)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)
