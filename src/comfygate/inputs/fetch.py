"""Fetching an image URL given by a client, without letting it reach the gateway's network.

The rules (allowed schemes and ports, public addresses only, the connection made to the checked
address) are ``comfygate.egress``'s, shared with webhooks. What is particular to images:

* redirects are followed by hand, each new URL checked from scratch;
* the body is streamed and cut off at ``max_bytes``; the whole fetch (resolution and every
  redirect included) has one deadline, ``timeout_s``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import urllib3

from comfygate import egress
from comfygate.egress import IPAddress, Resolver, Target
from comfygate.errors import ValidationFailed

__all__ = ["FetchPolicy", "Resolver", "fetch_url"]


@dataclass(frozen=True)
class FetchPolicy:
    """What ``fetch_url`` allows. ``allowed_ports=None`` allows every port (1-65535)."""

    allow_http: bool = False
    max_bytes: int = 20 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_ports: frozenset[int] | None = None

    @property
    def egress(self) -> egress.EgressPolicy:
        return egress.EgressPolicy(allow_http=self.allow_http, allowed_ports=self.allowed_ports)


_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {
    "User-Agent": "ComfyGate image fetch",
    "Accept": "image/png, image/jpeg, image/webp, image/*;q=0.8",
}


@dataclass(frozen=True)
class _Answer:
    redirect: str | None
    body: bytes


def _get(
    target: Target,
    addresses: list[IPAddress],
    field: str,
    policy: FetchPolicy,
    deadline: float,
) -> _Answer:
    """One GET to the first checked address that answers."""
    with egress.exchange(
        target,
        addresses,
        method="GET",
        headers=_HEADERS,
        body=None,
        field=field,
        deadline=deadline,
        timeout_s=policy.timeout_s,
    ) as response:
        if response.status in _REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise ValidationFailed(f"'{field}' URL redirected without a Location", field=field)
            return _Answer(location, b"")
        if response.status != 200:
            raise ValidationFailed(
                f"'{field}' URL answered HTTP {response.status}; expected 200", field=field
            )
        length = response.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > policy.max_bytes:
            raise _too_large(field, policy)
        return _Answer(None, _read_body(response, field, policy, deadline))


def _too_large(field: str, policy: FetchPolicy) -> ValidationFailed:
    return ValidationFailed(
        f"'{field}' URL's content is over the limit of {policy.max_bytes} bytes", field=field
    )


def _read_body(
    response: urllib3.BaseHTTPResponse, field: str, policy: FetchPolicy, deadline: float
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise egress.timed_out(field, policy.timeout_s)
        # The socket timeout applies to each read: bring it down to what is left, so a server
        # that sends a byte now and then can not stretch the fetch past the deadline.
        connection = response.connection
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            sock.settimeout(remaining)
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > policy.max_bytes:
            raise _too_large(field, policy)
        chunks.append(chunk)


def fetch_url(
    url: str,
    *,
    field: str,
    policy: FetchPolicy,
    resolver: Resolver | None = None,
) -> bytes:
    """The body of ``url`` if it is a public HTTPS (or allowed HTTP) URL; see the module doc.

    ``resolver(host, port)`` gives the addresses of a host name (``socket.getaddrinfo`` by
    default). The Content-Type of the answer is not looked at: run ``check_image`` on the
    bytes. Every refusal is a ``ValidationFailed`` naming ``field``.
    """
    deadline = time.monotonic() + policy.timeout_s
    current = url
    for hop in range(policy.max_redirects + 1):
        target = egress.check_url(current, field, policy.egress)
        addresses = egress.resolve(
            target, field, policy.egress, resolver, deadline, policy.timeout_s
        )
        answer = _get(target, addresses, field, policy, deadline)
        if answer.redirect is None:
            return answer.body
        if hop == policy.max_redirects:
            break
        current = urljoin(current, answer.redirect)
    raise ValidationFailed(
        f"'{field}' URL redirected more than {policy.max_redirects} times", field=field
    )
