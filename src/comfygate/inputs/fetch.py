"""Fetching an image URL given by a client, without letting it reach the gateway's network.

Server-side request forgery is the risk: a client names ``http://169.254.169.254/...`` or a
DNS name that resolves to ``10.0.0.5`` and the gateway fetches it from inside. So:

* only ``https`` (``http`` when the policy allows it), no user name or password, a host that is
  a DNS name or a canonical IP address (``2130706433``, ``0x7f.1``, ``0177.0.0.1``: hosts that
  end in a number but are not a dotted quad are refused, whatever a resolver would make of
  them), an allowed port;
* the host is resolved once and every address is checked (``_refused``): only public unicast
  addresses pass;
* the connection is made to the checked address itself, so a second resolution can not give a
  different answer (DNS rebinding); the ``Host`` header, TLS SNI and the certificate check use
  the host name;
* redirects are followed by hand, each new URL checked from scratch;
* the body is streamed and cut off at ``max_bytes``; the whole fetch (resolution included) has
  one deadline, ``timeout_s``.

Why urllib3 pools by hand rather than ``requests``: ``requests`` resolves the host name again
when it connects (and honours proxy variables), so what was checked would not be what is
connected to. A urllib3 connection pool built for the checked IP address, with
``server_hostname``/``assert_hostname`` set to the host name, is urllib3's own supported way to
connect to one address while verifying TLS for a name.

Messages say why a URL was refused, never what it resolved to.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from comfygate.errors import ValidationFailed

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    """What ``fetch_url`` allows. ``allowed_ports=None`` allows every port (1-65535)."""

    allow_http: bool = False
    max_bytes: int = 20 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_ports: frozenset[int] | None = None


_MAX_URL_LENGTH = 2048
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
)
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

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
# IPv6: only global unicast 2000::/3 is fetched (this excludes ::, ::1, IPv4-mapped ::ffff:0:0/96
# and IPv4-compatible addresses, NAT64 64:ff9b::/96, discard 100::/64, unique-local fc00::/7,
# link-local fe80::/10, site-local fec0::/10, multicast ff00::/8), minus these:
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


def _refused(ip: IPAddress) -> bool:
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


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower case, IDNA-encoded; an IPv6 address without brackets
    port: int
    request_target: str  # path and query
    literal_ip: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _check_url(url: str, field: str, policy: FetchPolicy) -> _Target:
    """Everything that can be checked without the network."""

    def refuse(why: str) -> ValidationFailed:
        return ValidationFailed(f"'{field}' URL {why}", field=field)

    schemes = "http:// or https://" if policy.allow_http else "https://"
    if len(url) > _MAX_URL_LENGTH:
        raise refuse(f"is longer than {_MAX_URL_LENGTH} characters")
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
        port = _DEFAULT_PORTS[parts.scheme]
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
            # accepted (resolvers read 2130706433, 0x7f.1 and 0177.0.0.1 as 127.0.0.1).
            try:
                literal = ipaddress.IPv4Address(host)
            except ValueError:
                raise refuse("has an invalid host (write an IPv4 address as a.b.c.d)") from None
        elif host == "localhost" or host.endswith(".localhost"):
            raise refuse(
                "resolves to a private or reserved address; only public addresses are fetched"
            )
    if literal is not None and _refused(literal):
        raise refuse("points to a private or reserved address; only public addresses are fetched")

    path = parts.path or "/"
    request_target = f"{path}?{parts.query}" if parts.query else path
    return _Target(parts.scheme, host, port, request_target, literal)


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _timed_out(field: str, policy: FetchPolicy) -> ValidationFailed:
    return ValidationFailed(
        f"'{field}' URL took longer than {policy.timeout_s:g} seconds to fetch", field=field
    )


def _resolve(
    target: _Target, field: str, policy: FetchPolicy, resolver: Resolver, deadline: float
) -> list[IPAddress]:
    """Resolve once, within the deadline, and check every address."""
    if target.literal_ip is not None:
        return [target.literal_ip]
    results: list[list[str]] = []
    errors: list[Exception] = []

    def work() -> None:
        try:
            results.append(resolver(target.host, target.port))
        except Exception as exc:
            errors.append(exc)

    # getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline.
    worker = threading.Thread(target=work, name="comfygate-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise _timed_out(field, policy)
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
    if any(_refused(ip) for ip in addresses):
        raise ValidationFailed(
            f"'{field}' URL resolves to a private or reserved address; "
            "only public addresses are fetched",
            field=field,
        )
    return addresses


def _pool(target: _Target, ip: IPAddress, remaining: float) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(ip),
            target.port,
            timeout=timeout,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=_ca_bundle(),
            server_hostname=target.host,  # SNI
            assert_hostname=target.host,  # the certificate must be the host name's
        )
    return urllib3.HTTPConnectionPool(
        str(ip), target.port, timeout=timeout, maxsize=1, retries=False
    )


def _ca_bundle() -> str:
    """The CA certificates used to verify servers (the same bundle as ``requests``)."""
    return certifi.where()


@dataclass(frozen=True)
class _Answer:
    redirect: str | None
    body: bytes


def _get(
    target: _Target, ip: IPAddress, field: str, policy: FetchPolicy, deadline: float
) -> _Answer:
    """One GET to ``ip``; raises ``NewConnectionError`` if it could not connect at all."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(field, policy)
    headers = {
        "Host": target.host_header,
        "User-Agent": "ComfyGate image fetch",
        "Accept": "image/png, image/jpeg, image/webp, image/*;q=0.8",
        "Accept-Encoding": "identity",
    }
    pool = _pool(target, ip, remaining)
    try:
        response = pool.urlopen(
            "GET",
            target.request_target,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            release_conn=False,
        )
        try:
            if response.status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise ValidationFailed(
                        f"'{field}' URL redirected without a Location", field=field
                    )
                return _Answer(location, b"")
            if response.status != 200:
                raise ValidationFailed(
                    f"'{field}' URL answered HTTP {response.status}; expected 200", field=field
                )
            length = response.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > policy.max_bytes:
                raise _too_large(field, policy)
            return _Answer(None, _read_body(response, field, policy, deadline))
        finally:
            response.close()
    finally:
        pool.close()


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
            raise _timed_out(field, policy)
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
    if not isinstance(url, str):
        raise ValidationFailed(f"'{field}' URL must be a string", field=field)
    resolve = resolver or _system_resolver
    deadline = time.monotonic() + policy.timeout_s
    current = url
    for hop in range(policy.max_redirects + 1):
        target = _check_url(current, field, policy)
        addresses = _resolve(target, field, policy, resolve, deadline)
        answer = _fetch_from(target, addresses, field, policy, deadline)
        if answer.redirect is None:
            return answer.body
        if hop == policy.max_redirects:
            break
        current = urljoin(current, answer.redirect)
    raise ValidationFailed(
        f"'{field}' URL redirected more than {policy.max_redirects} times", field=field
    )


def _fetch_from(
    target: _Target,
    addresses: list[IPAddress],
    field: str,
    policy: FetchPolicy,
    deadline: float,
) -> _Answer:
    """Try the checked addresses in order until one accepts the connection."""
    unreachable = ValidationFailed(f"'{field}' URL could not be reached", field=field)
    for ip in addresses:
        try:
            return _get(target, ip, field, policy, deadline)
        except NewConnectionError:
            # Nothing was sent: the next address may answer (e.g. IPv6 listed first on a host
            # without IPv6). A connect timeout is NewConnectionError's parent, not caught here.
            if time.monotonic() >= deadline:
                raise _timed_out(field, policy) from None
            continue
        except SSLError:
            raise ValidationFailed(
                f"'{field}' URL's TLS connection failed or its certificate is not valid for the "
                "host",
                field=field,
            ) from None
        except (Urllib3Timeout, TimeoutError):
            raise _timed_out(field, policy) from None
        except ProtocolError:
            if time.monotonic() >= deadline:
                raise _timed_out(field, policy) from None
            raise ValidationFailed(
                f"'{field}' URL's server closed the connection or sent a broken answer",
                field=field,
            ) from None
        except (HTTPError, http.client.HTTPException, OSError, ValueError):
            raise ValidationFailed(f"'{field}' URL could not be fetched", field=field) from None
    raise unreachable
