"""How the benchmarks call the gateway: plain HTTP, as any client would."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Generated:
    ok: bool
    status: int
    elapsed_s: float
    answered_at: float  # time.time() when the bytes were in hand
    job_id: str
    size: int
    error: str = ""


def generate(
    session: requests.Session, base_url: str, body: dict[str, Any], timeout_s: float = 600.0
) -> Generated:
    """POST /v1/generate and read the image; ``ok`` only for a 200 PNG."""
    started = time.perf_counter()
    try:
        resp = session.post(f"{base_url}/v1/generate", json=body, timeout=timeout_s)
        content = resp.content
    except requests.RequestException as exc:
        return Generated(
            False, 0, time.perf_counter() - started, time.time(), "", 0, type(exc).__name__
        )
    elapsed = time.perf_counter() - started
    ok = resp.status_code == 200 and content.startswith(PNG_MAGIC)
    error = "" if ok else f"HTTP {resp.status_code}: {content[:200]!r}"
    return Generated(
        ok,
        resp.status_code,
        elapsed,
        time.time(),
        resp.headers.get("X-Job-Id", ""),
        len(content),
        error,
    )
