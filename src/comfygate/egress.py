"""The one egress policy: every outbound request whose target a client chooses goes through here.

Two kinds of request have a client-chosen target: image URLs (``inputs.fetch``, a GET) and
webhooks (``jobs.webhooks``, a POST). Server-side request forgery is the risk of both: a
client names ``http://127.1:8188/interrupt``, ``http://169.254.169.254/...`` or a DNS name that
resolves to ``10.0.0.5``, and the gateway sends a request from inside the network. So, for
both, the same rules:

* an allowed scheme (``https``; ``http`` where the caller's policy allows it), no user name or
  password, a host that is a DNS name or a canonical IP address (``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``, ``127.1``: hosts that end in a number but are not a dotted quad are refused,
  whatever a resolver would make of them), an allowed port;
* the host is resolved once per request and every address is checked (``refused``): only
  public unicast addresses pass, unless the policy allows private ones
  (``WEBHOOK_ALLOW_PRIVATE``, for local development);
* the connection is made to the checked address itself, so a second resolution can not give a
  different answer (DNS rebinding); the ``Host`` header, TLS SNI and the certificate check use
  the host name;
* redirects are never followed here: a caller that follows them checks each new URL from
  scratch (``fetch_url``) or counts them as a failure (webhooks).

Why urllib3 pools by hand rather than ``requests``: ``requests`` resolves the host name again
when it connects (and honours proxy variables), so what was checked would not be what is
connected to. A urllib3 connection pool built for the checked IP address, with
``server_hostname``/``assert_hostname`` set to the host name, is urllib3's own supported way to
connect to one address while verifying TLS for a name.

Refusals are ``ValidationFailed`` naming the client's field. Messages say why a URL was
refused, never what it resolved to, and a failure to connect is one message whatever the
cause, so the answers can not be used to map the network.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from comfygate.errors import ValidationFailed

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValidationFailed):
    """The policy refuses the URL itself (not a passing failure to reach it)."""


@dataclass(frozen=True)
class EgressPolicy:
    """Where a client-aimed request may go. ``allowed_ports=None`` allows every port."""

    allow_http: bool = False
    allow_private: bool = False
    allowed_ports: frozenset[int] | None = None


MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
)
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PRIVATE = "a private or reserved address; only public addresses are allowed"

# Not globally reachable (IANA special-purpose registries). Python's own flags
# (is_private, is_global, ...) differ between Python versions, so this table decides, and the
# flags only add to it.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255
    )
)
# IPv6: only global unicast 2000::/3 is reached (this excludes ::, ::1, IPv4-mapped
# ::ffff:0:0/96 and IPv4-compatible addresses, NAT64 64:ff9b::/96, discard 100::/64,
# unique-local fc00::/7 (fd00:ec2::254, the EC2 metadata address, among them), link-local
# fe80::/10, site-local fec0::/10, multicast ff00::/8), minus these:
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, Teredo 2001::/32 (embeds an IPv4 address)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (embeds an IPv4 address)
        "3fff::/20",  # documentation
    )
)


def refused(ip: IPAddress) -> bool:
    """True unless ``ip`` is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None or ip not in _GLOBAL_V6:
            return True
        if any(ip in net for net in _BLOCKED_V6):
            return True
    elif any(ip in net for net in _BLOCKED_V4):
        return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _allowed(ip: IPAddress, policy: EgressPolicy) -> bool:
    if policy.allow_private:
        # Even then never the unspecified address or multicast: no service is there.
        return not (ip.is_unspecified or ip.is_multicast)
    return not refused(ip)


@dataclass(frozen=True)
class Target:
    """A URL that passed every check that needs no network."""

    scheme: str
    host: str  # lower case, IDNA-encoded; an IPv6 address without brackets
    port: int
    request_target: str  # path and query
    literal_ip: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def check_url(url: str, field: str, policy: EgressPolicy) -> Target:
    """Everything that can be checked without the network (run it when the URL arrives)."""

    def refuse(why: str) -> Refused:
        return Refused(f"'{field}' URL {why}", field=field)

    if not isinstance(url, str):
        raise refuse("must be a string")
    schemes = "http:// or https://" if policy.allow_http else "https://"
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"is longer than {MAX_URL_LENGTH} characters")
    # urlsplit drops tabs and line breaks without a word: refuse them instead.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url.strip()):
        raise refuse("contains control characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise refuse("is not a valid URL") from None
    allowed_schemes = {"http", "https"} if policy.allow_http else {"https"}
    if parts.scheme not in allowed_schemes:
        raise refuse(f"must start with {schemes}")
    if "@" in parts.netloc:
        raise refuse("must not contain a user name or password")
    raw_host = parts.hostname
    if not raw_host:
        raise refuse("has no host")
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    if not 0 < port < 65536:
        raise refuse("has an invalid port")
    if policy.allowed_ports is not None and port not in policy.allowed_ports:
        raise refuse(f"port {port} is not allowed")

    host = raw_host
    literal: IPAddress | None = None
    if ":" in raw_host:  # urlsplit only lets this through from an [IPv6] literal
        try:
            literal = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise refuse("has an invalid host") from None
        host = str(literal)
    else:
        try:
            host = raw_host.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise refuse("has an invalid host") from None
        if not _HOST_NAME.fullmatch(host):
            raise refuse("has an invalid host")
        if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
            # Ends in a number: an IPv4 address, and only the canonical dotted quad is
            # accepted (resolvers read 2130706433, 0x7f.1, 127.1 and 0177.0.0.1 as 127.0.0.1).
            try:
                literal = ipaddress.IPv4Address(host)
            except ValueError:
                raise refuse("has an invalid host (write an IPv4 address as a.b.c.d)") from None
        elif (host == "localhost" or host.endswith(".localhost")) and not policy.allow_private:
            raise refuse(f"resolves to {_PRIVATE}")
    if literal is not None and not _allowed(literal, policy):
        raise refuse(f"points to {_PRIVATE}")

    path = parts.path or "/"
    request_target = f"{path}?{parts.query}" if parts.query else path
    return Target(parts.scheme, host, port, request_target, literal)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def timed_out(field: str, timeout_s: float) -> ValidationFailed:
    return ValidationFailed(
        f"'{field}' URL took longer than {timeout_s:g} seconds to answer", field=field
    )


def resolve(
    target: Target,
    field: str,
    policy: EgressPolicy,
    resolver: Resolver | None,
    deadline: float,
    timeout_s: float,
) -> list[IPAddress]:
    """Resolve once, within the deadline, and check every address (one refused: refused)."""
    if target.literal_ip is not None:
        return [target.literal_ip]
    resolve_now = resolver or system_resolver
    results: list[list[str]] = []
    errors: list[Exception] = []

    def work() -> None:
        try:
            results.append(resolve_now(target.host, target.port))
        except Exception as exc:
            errors.append(exc)

    # getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline.
    worker = threading.Thread(target=work, name="comfygate-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise timed_out(field, timeout_s)
    unresolved = ValidationFailed(f"'{field}' URL host could not be resolved", field=field)
    if errors:
        if isinstance(errors[0], OSError | UnicodeError):
            raise unresolved from None
        raise errors[0]
    addresses: list[IPAddress] = []
    for text in results[0] if results else []:
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            raise unresolved from None
    if not addresses:
        raise unresolved
    if not all(_allowed(ip, policy) for ip in addresses):
        raise Refused(f"'{field}' URL resolves to {_PRIVATE}", field=field)
    return addresses


def check_and_resolve(
    url: str,
    field: str,
    policy: EgressPolicy,
    *,
    timeout_s: float,
    resolver: Resolver | None = None,
) -> tuple[Target, list[IPAddress]]:
    """``check_url`` and ``resolve`` in one (a URL a client just gave, checked up front)."""
    target = check_url(url, field, policy)
    deadline = time.monotonic() + timeout_s
    return target, resolve(target, field, policy, resolver, deadline, timeout_s)


def ca_bundle() -> str:
    """The CA certificates used to verify servers (the same bundle as ``requests``)."""
    return certifi.where()


def _pool(target: Target, ip: IPAddress, remaining: float) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(ip),
            target.port,
            timeout=timeout,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle(),
            server_hostname=target.host,  # SNI
            assert_hostname=target.host,  # the certificate must be the host name's
        )
    return urllib3.HTTPConnectionPool(
        str(ip), target.port, timeout=timeout, maxsize=1, retries=False
    )


@contextmanager
def exchange(
    target: Target,
    addresses: list[IPAddress],
    *,
    method: str,
    headers: Mapping[str, str],
    body: bytes | None,
    field: str,
    deadline: float,
    timeout_s: float,
) -> Iterator[urllib3.BaseHTTPResponse]:
    """One request to the first checked address that accepts the connection; the response
    (headers read, body not yet) is closed with its connection when the block ends.

    Redirects are not followed. Every failure is a ``ValidationFailed`` naming ``field``.
    """
    sent_headers = {"Host": target.host_header, "Accept-Encoding": "identity", **headers}
    for ip in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out(field, timeout_s)
        pool = _pool(target, ip, remaining)
        try:
            try:
                response = pool.urlopen(
                    method,
                    target.request_target,
                    body=body,
                    headers=sent_headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                    release_conn=False,
                )
            except NewConnectionError:
                # Nothing was sent: the next address may answer (e.g. IPv6 listed first on a
                # host without IPv6). A connect timeout is NewConnectionError's parent.
                if time.monotonic() >= deadline:
                    raise timed_out(field, timeout_s) from None
                continue
            try:
                yield response
            finally:
                response.close()
            return
        except SSLError:
            raise ValidationFailed(
                f"'{field}' URL's TLS connection failed or its certificate is not valid for the "
                "host",
                field=field,
            ) from None
        except (Urllib3Timeout, TimeoutError):
            raise timed_out(field, timeout_s) from None
        except ProtocolError:
            if time.monotonic() >= deadline:
                raise timed_out(field, timeout_s) from None
            raise ValidationFailed(
                f"'{field}' URL's server closed the connection or sent a broken answer",
                field=field,
            ) from None
        except (HTTPError, http.client.HTTPException, OSError, ValueError):
            raise ValidationFailed(f"'{field}' URL could not be reached", field=field) from None
        finally:
            pool.close()
    raise ValidationFailed(f"'{field}' URL could not be reached", field=field)
