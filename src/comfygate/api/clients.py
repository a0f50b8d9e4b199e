"""Who a request counts against: its API key's owner, or its client address when keys are off.

One definition for every per-client budget (rate limits, waiting requests). The address is
``request.remote_addr``, which is the peer's own address unless ``TRUSTED_PROXIES`` lets the
proxies' ``X-Forwarded-For`` say otherwise (werkzeug's ProxyFix, in the app factory).
"""

from __future__ import annotations

from flask import request

from comfygate.api import auth


def address_key() -> str:
    return f"addr:{request.remote_addr or '-'}"


def client_key() -> str:
    owner = auth.principal().owner
    if owner is not None and owner != "-":
        return f"key:{owner}"
    return address_key()
