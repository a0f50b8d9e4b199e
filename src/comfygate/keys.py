"""API keys: parsing them, recognising one in constant time, and who a key makes the caller.

Keys come from ``API_KEYS`` (comma-separated) and ``API_KEYS_FILE`` (one per line, ``#``
comments and blank lines ignored). Each is ``key`` or ``key:scope1,scope2`` (in ``API_KEYS``,
where commas separate keys, join scopes with ``+``: ``key:admin+workflows``). Scopes:

* ``admin``: the operations routes (/v1/backends, /metrics, /v1/templates/check) and every
  key's jobs, outputs and batches;
* ``workflows``: POST /v1/workflows/run (raw API-format graphs).

A key is never kept for comparison nor logged: the ring holds its SHA-256 digest, and a
presented key is hashed and compared with ``hmac.compare_digest`` against *every* digest,
without stopping at a match, so the time taken says nothing about which key (or how much of
one) matched. What a job records as its owner is another hash of the key (``owner_id``),
so the job store never holds a key either.

The file is read again when it changes (checked at most once a second), so keys can be
rotated without a restart; a file that has become unreadable or malformed keeps the keys
read last and logs why. Knows nothing of Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SCOPES = frozenset({"admin", "workflows"})
MIN_KEY_LENGTH = 16  # shorter keys are accepted, with a warning at start
RELOAD_CHECK_S = 1.0
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what fits in a header
_SCOPE_SEPARATORS = re.compile(r"[,+\s]+")


class KeySpecError(ValueError):
    """A key specification is malformed; the message never contains the key."""


def owner_id(key: str) -> str:
    """The owner recorded on what a key makes: a hash of the key, never the key."""
    return hashlib.sha256(b"comfygate-owner\0" + key.encode()).hexdigest()[:32]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``owner`` is None when API keys are off (everyone sees everything)."""

    owner: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def admin(self) -> bool:
        return self.owner is None or "admin" in self.scopes

    def allows(self, scope: str) -> bool:
        return self.owner is not None and scope in self.scopes

    @property
    def sees(self) -> str | None:
        """The owner whose things this caller may see; None for all (admin, keys off)."""
        return None if self.admin else self.owner


OPEN = Principal(None, frozenset())


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def parse_spec(spec: str, where: str) -> tuple[str, frozenset[str]]:
    """``key`` or ``key:scope,scope`` -> (key, scopes). Errors name ``where``, never the key."""
    key, _, scope_text = spec.strip().partition(":")
    if not key or not _KEY.fullmatch(key):
        raise KeySpecError(f"{where}: a key must be printable ASCII without spaces or ':'")
    scopes = frozenset(s for s in _SCOPE_SEPARATORS.split(scope_text.strip()) if s)
    unknown = scopes - SCOPES
    if unknown:
        raise KeySpecError(
            f"{where}: unknown scope(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(SCOPES))})"
        )
    return key, scopes


def read_file(path: Path) -> list[tuple[str, frozenset[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeySpecError(f"API_KEYS_FILE {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeySpecError(f"API_KEYS_FILE {path}: not UTF-8 text") from None
    specs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            specs.append(parse_spec(line, f"API_KEYS_FILE {path} line {number}"))
    return specs


class KeyRing:
    """The keys in force. Empty (falsy) means API keys are off."""

    def __init__(self, specs: list[str], file: Path | None = None) -> None:
        self._static = [parse_spec(s, f"API_KEYS entry {i + 1}") for i, s in enumerate(specs)]
        self._file = file
        self._lock = threading.Lock()
        self._file_stamp: tuple[float, int] | None = None
        self._checked = 0.0
        from_file = read_file(file) if file is not None else []
        if file is not None:
            self._file_stamp = self._stamp()
        self._entries = self._build(from_file)
        short = [1 for key, _ in [*self._static, *from_file] if len(key) < MIN_KEY_LENGTH]
        if short:
            log.warning(
                "%d API key(s) shorter than %d characters: use long random keys",
                len(short),
                MIN_KEY_LENGTH,
            )

    def _stamp(self) -> tuple[float, int] | None:
        assert self._file is not None
        try:
            st = os.stat(self._file)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def _build(self, from_file: list[tuple[str, frozenset[str]]]) -> list[_Entry]:
        return [
            _Entry(_digest(key), Principal(owner_id(key), scopes))
            for key, scopes in [*self._static, *from_file]
        ]

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        current = time.monotonic()
        with self._lock:
            if current - self._checked < RELOAD_CHECK_S:
                return
            self._checked = current
            stamp = self._stamp()
            if stamp == self._file_stamp:
                return
            try:
                from_file = read_file(self._file)
            except KeySpecError as exc:
                log.error("keeping the previous API keys: %s", exc)
                return
            self._file_stamp = stamp
            self._entries = self._build(from_file)
            log.info("API keys reloaded from API_KEYS_FILE (%d in force)", len(self._entries))

    def __bool__(self) -> bool:
        self._maybe_reload()
        return bool(self._entries) or self._file is not None

    def identify(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None. Compares with every key, always."""
        self._maybe_reload()
        digest = _digest(presented)
        found: Principal | None = None
        for entry in self._entries:
            # No early exit: every key is compared whatever matched before.
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry.principal
        return found
