"""Image inputs: check_image, decode_data_uri and the SSRF-safe fetch_url.

No internet: the fetch tests run HTTP(S) servers in threads on 127.0.0.2. That address is
loopback, so fetch_url refuses it like any other; the ``pretend_public`` fixture lets exactly
127.0.0.2 through (and nothing else, 127.0.0.1 included) for the tests of the connection
mechanics, reached through a name given by an injected resolver.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from comfygate import egress
from comfygate.errors import ValidationFailed
from comfygate.inputs.fetch import FetchPolicy, fetch_url
from comfygate.inputs.images import CheckedImage, check_image, decode_data_uri

MiB = 2**20
LIMIT = 16_777_216  # 4096 x 4096


def image_bytes(fmt: str, size: tuple[int, int] = (32, 24), **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt, **save)
    return buf.getvalue()


def noise_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (with a correct CRC) claims width x height."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def check(data: bytes, **kwargs: Any) -> CheckedImage:
    kwargs.setdefault("max_bytes", 20 * MiB)
    kwargs.setdefault("max_pixels", LIMIT)
    return check_image(data, field="image", **kwargs)


PNG = image_bytes("PNG")


# --- check_image ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_real_images_pass(fmt: str, content_type: str, ext: str) -> None:
    data = image_bytes(fmt, (40, 30))
    checked = check(data)
    assert (checked.format, checked.width, checked.height) == (fmt, 40, 30)
    assert checked.content_type == content_type
    assert checked.data == data
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert checked.filename() == f"cg-{checked.sha256[:32]}.{ext}"


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        pytest.param(b"", {}, "'image' is empty", id="zero-bytes"),
        pytest.param(
            b"hello, I am a text file named cat.png\n",
            {},
            "'image' is not a PNG, JPEG or WebP image",
            id="text-file",
        ),
        pytest.param(
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            {},
            "'image' is not a PNG, JPEG or WebP image",
            id="svg",
        ),
        pytest.param(image_bytes("GIF"), {}, "'image' is not a PNG, JPEG or WebP image", id="gif"),
        pytest.param(
            image_bytes("GIF"),
            {"formats": frozenset({"PNG"})},
            "'image' is not a PNG image",
            id="gif-png-only",
        ),
        pytest.param(
            image_bytes("JPEG"),
            {"formats": frozenset({"PNG", "WEBP"})},
            "'image' is not a PNG or WebP image",
            id="jpeg-not-allowed",
        ),
        pytest.param(
            noise_bytes("PNG")[:3000],
            {},
            "'image' is a damaged or truncated PNG image",
            id="truncated-png",
        ),
        pytest.param(
            noise_bytes("JPEG")[:3000],
            {},
            "'image' is a damaged or truncated JPEG image",
            id="truncated-jpeg",
        ),
        pytest.param(
            PNG[:-8] + b"\0" * 8, {}, "'image' is a damaged or truncated PNG image", id="bad-iend"
        ),
        pytest.param(
            png_claiming(4097, 4097),
            {},
            f"'image' is 4097x4097 pixels, over the limit of {LIMIT}",
            id="bomb-header-over-max-pixels",
        ),
        pytest.param(
            png_claiming(5000, 5000),
            {"max_pixels": 1_000_000},
            "'image' is 5000x5000 pixels, over the limit of 1000000",
            id="bomb-small-limit",
        ),
        pytest.param(
            # 100M pixels: Pillow's DecompressionBombWarning (an error under these tests).
            png_claiming(10_000, 10_000),
            {},
            f"'image' has more pixels than the limit of {LIMIT}",
            id="bomb-pillow-warning",
        ),
        pytest.param(
            # 900M pixels: Pillow's DecompressionBombError, raised while opening.
            png_claiming(30_000, 30_000),
            {},
            f"'image' has more pixels than the limit of {LIMIT}",
            id="bomb-pillow-error",
        ),
        pytest.param(
            PNG,
            {"max_bytes": 10},
            f"'image' is {len(PNG)} bytes, over the limit of 10 bytes",
            id="too-many-bytes",
        ),
        pytest.param(
            animated("PNG"),
            {},
            "'image' is animated or has several frames (3); send a single still image",
            id="apng",
        ),
        pytest.param(
            animated("WEBP"),
            {},
            "'image' is animated or has several frames (3); send a single still image",
            id="animated-webp",
        ),
        pytest.param(
            animated("MPO"),
            {},
            "'image' is animated or has several frames (3); send a single still image",
            id="multi-picture-jpeg",
        ),
    ],
)
def test_bad_images_refused(data: bytes, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check(data, **kwargs)
    assert caught.value.message == message
    assert caught.value.details == {"field": "image"}


def test_pixel_limit_holds_when_pillow_only_warns() -> None:
    """With warnings not turned into errors, the header check still refuses the bomb, and
    never allows more than Pillow's own limit even if max_pixels is larger."""
    assert Image.MAX_IMAGE_PIXELS is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ValidationFailed) as caught:
            check(png_claiming(10_000, 10_000), max_pixels=10**12)
    assert caught.value.message == (
        f"'image' is 10000x10000 pixels, over the limit of {Image.MAX_IMAGE_PIXELS}"
    )


def test_unsupported_formats_argument_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="GIF"):
        check(PNG, formats=frozenset({"PNG", "GIF"}))


# --- decode_data_uri ------------------------------------------------------------------------


def data_uri(payload: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(payload).decode('ascii')}"


def decode(value: str, max_bytes: int = MiB) -> bytes:
    return decode_data_uri(value, field="image", max_bytes=max_bytes)


@pytest.mark.parametrize("media", ["image/png", "image/jpeg", "image/webp", "IMAGE/PNG"])
def test_data_uri_decodes_and_checks(media: str) -> None:
    assert check(decode(data_uri(PNG, media))).format == "PNG"


def test_data_uri_with_extra_parameter() -> None:
    assert decode(f"data:image/png;name=cat.png;base64,{base64.b64encode(PNG).decode()}") == PNG


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            "data:image/png;base64,!!!not*base64!!!",
            "'image' data URI is not valid base64",
            id="garbage",
        ),
        pytest.param(
            "data:image/png;base64,iVBO\nRw0K", "'image' data URI is not valid base64", id="newline"
        ),
        pytest.param(
            "data:image/png;base64,iVBORw0", "'image' data URI is not valid base64", id="padding"
        ),
        pytest.param(
            "data:image/png;base64,AA==AA==", "'image' data URI is not valid base64", id="after-pad"
        ),
        pytest.param(
            "data:image/png;base64,_-8A", "'image' data URI is not valid base64", id="urlsafe"
        ),
        pytest.param(
            "data:image/png;base64,ÄÖÜé", "'image' data URI is not valid base64", id="non-ascii"
        ),
        pytest.param(
            data_uri(PNG, "text/plain"),
            "'image' data URI must have the media type image/png, image/jpeg or image/webp",
            id="text-plain",
        ),
        pytest.param(
            data_uri(image_bytes("GIF"), "image/gif"),
            "'image' data URI must have the media type image/png, image/jpeg or image/webp",
            id="gif",
        ),
        pytest.param(
            data_uri(b"<svg/>", "image/svg+xml"),
            "'image' data URI must have the media type image/png, image/jpeg or image/webp",
            id="svg",
        ),
        pytest.param(
            "data:,hello",
            "'image' data URI must have the media type image/png, image/jpeg or image/webp",
            id="no-media-type",
        ),
        pytest.param(
            "data:image/png,%89PNG",
            "'image' data URI must be base64-encoded (data:image/png;base64,...)",
            id="not-base64",
        ),
        pytest.param(
            "data:image/png;charset;base64,AAAA",
            "'image' data URI must be base64-encoded (data:image/png;base64,...)",
            id="bad-parameter",
        ),
        pytest.param(
            "https://example.com/cat.png",
            "'image' is not a data: URI (data:image/png;base64,...)",
            id="url",
        ),
        pytest.param(
            "iVBORw0KGgo=", "'image' is not a data: URI (data:image/png;base64,...)", id="bare"
        ),
        pytest.param("data:image/png;base64,", "'image' data URI has no data", id="empty"),
    ],
)
def test_bad_data_uris_refused(value: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode(value)
    assert caught.value.message == message
    assert caught.value.details == {"field": "image"}


def test_oversized_data_uri_refused_before_decoding() -> None:
    # Not base64 at all: the size refusal proves nothing was decoded first.
    with pytest.raises(ValidationFailed) as caught:
        decode("data:image/png;base64," + "!" * 4000, max_bytes=1000)
    assert (
        caught.value.message == "'image' is 3000 bytes once decoded, over the limit of 1000 bytes"
    )

    huge = "data:image/png;base64," + "A" * (64 * MiB)
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="over the limit of 1048576 bytes"):
        decode(huge)
    assert time.monotonic() - started < 1.0


MEDIA_TYPES = st.sampled_from(["image/png", "image/jpeg", "image/webp", "Image/PNG", "IMAGE/WEBP"])


@given(payload=st.binary(min_size=1, max_size=4096), media=MEDIA_TYPES)
def test_data_uri_round_trip(payload: bytes, media: str) -> None:
    assert decode(data_uri(payload, media), max_bytes=4096) == payload


@given(payload=st.binary(min_size=1, max_size=64), limit=st.integers(0, 80))
def test_data_uri_size_limit_is_exact(payload: bytes, limit: int) -> None:
    uri = data_uri(payload)
    if len(payload) <= limit:
        assert decode(uri, max_bytes=limit) == payload
    else:
        with pytest.raises(ValidationFailed, match="over the limit"):
            decode(uri, max_bytes=limit)


@given(text=st.text(max_size=300), prefix=st.sampled_from(["", "data:image/png;base64,"]))
def test_data_uri_any_text_is_bytes_or_a_validation_error(text: str, prefix: str) -> None:
    error: ValidationFailed | None = None
    try:
        decode(prefix + text)
    except ValidationFailed as exc:
        error = exc
    assert error is None or error.details == {"field": "image"}


# --- fetch_url: test servers ----------------------------------------------------------------

PRETEND_PUBLIC = "127.0.0.2"
NOBODY_THERE = "127.0.0.3"
BIG = 200_000


class Server(ThreadingHTTPServer):
    def __init__(self, host: str) -> None:
        super().__init__((host, 0), Handler)
        self.log: list[tuple[str, str]] = []  # (path, Host header)
        self.sni: list[str | None] = []
        self.stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.log.append((self.path, self.headers.get("Host", "")))
        with contextlib.suppress(OSError):  # the client gave up (the point of several tests)
            self.route()

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}) and body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route(self) -> None:
        port = self.server.port
        path = self.path
        if path == "/image.png":
            self.send(200, PNG, {"Content-Type": "text/html"})  # Content-Type is not trusted
        elif path == "/redirect-relative":
            self.send(302, headers={"Location": "/image.png"})
        elif path == "/redirect-loopback":
            self.send(302, headers={"Location": f"http://127.0.0.1:{port}/image.png"})
        elif path == "/redirect-metadata":
            self.send(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/redirect-ftp":
            self.send(302, headers={"Location": "ftp://files.example.com/cat.png"})
        elif path == "/redirect-nowhere":
            self.send(302)
        elif path.startswith("/loop/"):
            self.send(307, headers={"Location": f"/loop/{int(path[6:]) + 1}"})
        elif path == "/big-declared":
            self.send(200, b"x" * BIG)
        elif path == "/big-streamed":  # no Content-Length: read until the server closes
            self.send_response(200)
            self.end_headers()
            for _ in range(BIG // 1000):
                self.wfile.write(b"x" * 1000)
        elif path == "/slow":
            self.server.stop.wait(5)
            self.send(200, PNG)
        elif path == "/drip":  # each read is quick; only the total deadline stops it
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not self.server.stop.wait(0.05):
                self.wfile.write(b"x")
        else:
            self.send(404, b"not here")


@contextlib.contextmanager
def serve(host: str, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(host)
    if tls is not None:

        def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            server.sni.append(name)

        tls.sni_callback = record_sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def web() -> Iterator[Server]:
    with serve(PRETEND_PUBLIC) as server:
        yield server


@pytest.fixture
def pretend_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let exactly 127.0.0.2 and .3 count as public (127.0.0.1 and the rest stay refused)."""
    real = egress.refused
    pretend = {ipaddress.ip_address(PRETEND_PUBLIC), ipaddress.ip_address(NOBODY_THERE)}

    def refused(ip: egress.IPAddress) -> bool:
        return ip not in pretend and real(ip)

    monkeypatch.setattr(egress, "refused", refused)


class FakeDNS:
    """An injected resolver: fixed answers, every call recorded, unknown names fail."""

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records = records or {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.records[host])


HTTP = FetchPolicy(allow_http=True, timeout_s=5.0)


def get(
    url: str, policy: FetchPolicy = HTTP, resolver: Callable[[str, int], list[str]] | None = None
) -> bytes:
    return fetch_url(url, field="image", policy=policy, resolver=resolver)


# --- fetch_url: hostile URLs, refused before any connection -----------------------------------

PRIVATE = "'image' URL points to a private or reserved address; only public addresses are allowed"
RESOLVES = (
    "'image' URL resolves to a private or reserved address; only public addresses are allowed"
)
NUMERIC = "'image' URL has an invalid host (write an IPv4 address as a.b.c.d)"
DNS = FakeDNS(
    {
        "internal.example.com": ["10.1.2.3"],
        "mixed.example.com": ["93.184.215.14", "10.0.0.1"],
        "mapped.example.com": ["2606:4700::1111", "::ffff:169.254.169.254"],
        "metadata.example.com": ["169.254.169.254"],
        "cgnat.example.com": ["100.64.0.7"],
        "ula.example.com": ["fd12:3456::1"],
        "127.0.0.1.nip.io": ["127.0.0.1"],
        "empty.example.com": [],
    }
)


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("https://127.0.0.1/", None, PRIVATE),
        ("http://127.0.0.1/cat.png", HTTP, PRIVATE),
        ("https://127.255.255.254:8443/", None, PRIVATE),
        ("https://localhost/", None, RESOLVES),
        ("https://LOCALHOST./", None, RESOLVES),
        ("https://api.localhost/", None, RESOLVES),
        ("https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", None, RESOLVES),
        ("https://169.254.169.254/latest/meta-data/", None, PRIVATE),
        ("http://169.254.169.254/latest/meta-data/", HTTP, PRIVATE),
        ("https://[::1]/", None, PRIVATE),
        ("https://[::ffff:127.0.0.1]/", None, PRIVATE),
        ("https://[::ffff:7f00:1]/", None, PRIVATE),
        ("https://[::ffff:169.254.169.254]/", None, PRIVATE),
        ("https://[::]/", None, PRIVATE),
        ("https://[fe80::1]/", None, PRIVATE),
        ("https://[fe80::1%25eth0]/", None, PRIVATE),
        ("https://[fd00::1]/", None, PRIVATE),
        ("https://[ff02::1]/", None, PRIVATE),
        ("https://[2002:7f00:1::]/", None, PRIVATE),
        ("https://[64:ff9b::7f00:1]/", None, PRIVATE),
        ("https://2130706433/", None, NUMERIC),
        ("http://2130706433/", HTTP, NUMERIC),
        ("https://0x7f000001/", None, NUMERIC),
        ("https://0177.0.0.1/", None, NUMERIC),
        ("https://0x7f.1/", None, NUMERIC),
        ("https://127.1/", None, NUMERIC),
        ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", None, PRIVATE),
        ("https://127.0.0.1./", None, PRIVATE),
        ("https://10.0.0.5/", None, PRIVATE),
        ("https://172.16.0.1/", None, PRIVATE),
        ("https://192.168.1.1/", None, PRIVATE),
        ("https://100.64.0.1/", None, PRIVATE),
        ("https://0.0.0.0/", None, PRIVATE),
        ("https://224.0.0.1/", None, PRIVATE),
        ("https://255.255.255.255/", None, PRIVATE),
        ("https://internal.example.com/cat.png", None, RESOLVES),
        ("https://mixed.example.com/cat.png", None, RESOLVES),
        ("https://mapped.example.com/cat.png", None, RESOLVES),
        ("https://metadata.example.com/", None, RESOLVES),
        ("https://cgnat.example.com/", None, RESOLVES),
        ("https://ula.example.com/", None, RESOLVES),
        ("https://127.0.0.1.nip.io/", None, RESOLVES),
        ("https://nowhere.example.com/", None, "'image' URL host could not be resolved"),
        ("https://empty.example.com/", None, "'image' URL host could not be resolved"),
        ("http://public.example.com/cat.png", None, "'image' URL must start with https://"),
        (
            "ftp://public.example.com/cat.png",
            HTTP,
            "'image' URL must start with http:// or https://",
        ),
        ("file:///etc/passwd", None, "'image' URL must start with https://"),
        (
            "gopher://127.0.0.1:6379/_FLUSHALL",
            HTTP,
            "'image' URL must start with http:// or https://",
        ),
        ("//public.example.com/cat.png", None, "'image' URL must start with https://"),
        ("cat.png", None, "'image' URL must start with https://"),
        (
            "https://user:pass@public.example.com/",
            None,
            "'image' URL must not contain a user name or password",
        ),
        (
            "https://public.example.com@127.0.0.1/",
            None,
            "'image' URL must not contain a user name or password",
        ),
        ("https:///etc/passwd", None, "'image' URL has no host"),
        ("https://exa%6dple.com/", None, "'image' URL has an invalid host"),
        ("https://public.example.com:99999/", None, "'image' URL is not a valid URL"),
        ("https://[::1/", None, "'image' URL is not a valid URL"),
        ("https://public.example.com:0/", None, "'image' URL has an invalid port"),
        ("https://exa mple.com/", None, "'image' URL has an invalid host"),
        (
            "https://example.com\\@127.0.0.1/",
            None,
            "'image' URL must not contain a user name or password",
        ),
        (
            "https://public.example.com:8443/",
            FetchPolicy(allowed_ports=frozenset({443})),
            "'image' URL port 8443 is not allowed",
        ),
        (
            "https://public.example.com/" + "a" * 2100,
            None,
            "'image' URL is longer than 2048 characters",
        ),
    ],
)
def test_hostile_urls_refused(url: str, policy: FetchPolicy | None, message: str) -> None:
    before = len(DNS.calls)
    with pytest.raises(ValidationFailed) as caught:
        get(url, policy or FetchPolicy(), DNS)
    assert caught.value.message == message
    assert caught.value.details == {"field": "image"}
    # Nothing about the resolution leaks into the message.
    for secret in ("10.1.2.3", "10.0.0.1", "169.254", "100.64", "fd12", "93.184"):
        assert secret not in caught.value.message or secret in url
    if message not in (RESOLVES, "'image' URL host could not be resolved"):
        assert len(DNS.calls) == before, "refused from the URL alone, before any DNS look-up"


def test_loopback_refused_without_injected_resolver(web: Server) -> None:
    """The real server is there, but without the test's resolver nothing reaches it."""
    for url in (
        f"http://127.0.0.1:{web.port}/image.png",
        f"http://{PRETEND_PUBLIC}:{web.port}/image.png",
        f"http://localhost:{web.port}/image.png",
    ):
        with pytest.raises(ValidationFailed, match="private or reserved address"):
            get(url)
    # A name resolving to it through the injected resolver is refused too (no pretend_public).
    with pytest.raises(ValidationFailed) as caught:
        get(
            f"http://images.example.com:{web.port}/image.png",
            resolver=FakeDNS({"images.example.com": [PRETEND_PUBLIC]}),
        )
    assert caught.value.message == RESOLVES
    assert web.log == []


# --- fetch_url: the connection mechanics (against the pretend-public test server) ------------


@pytest.mark.usefixtures("pretend_public")
def test_fetch_connects_to_the_checked_address_with_the_host_name(
    web: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[object] = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    # A rebinding DNS: public-looking the first time, the metadata address afterwards.
    answers = iter([[PRETEND_PUBLIC], ["169.254.169.254"], ["169.254.169.254"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    data = get(f"http://images.example.com:{web.port}/image.png", resolver=rebinding)

    assert data == PNG
    assert check(data).format == "PNG"  # Content-Type said text/html: not trusted
    assert calls == ["images.example.com"], "resolved exactly once"
    assert "images.example.com" not in looked_up, "the connection never resolved the name again"
    assert web.log == [("/image.png", f"images.example.com:{web.port}")]


@pytest.mark.usefixtures("pretend_public")
def test_fetch_tries_the_next_checked_address(web: Server) -> None:
    # Nobody listens on 127.0.0.3 (made to count as public too): refused, so the next
    # checked address is tried; when none answers, the URL could not be reached.
    dns = FakeDNS(
        {"images.example.com": [NOBODY_THERE, PRETEND_PUBLIC], "down.example.com": [NOBODY_THERE]}
    )
    assert get(f"http://images.example.com:{web.port}/image.png", resolver=dns) == PNG
    with pytest.raises(ValidationFailed) as caught:
        get(f"http://down.example.com:{web.port}/image.png", resolver=dns)
    assert caught.value.message == "'image' URL could not be reached"
    assert len(web.log) == 1


@pytest.mark.usefixtures("pretend_public")
def test_fetch_follows_a_relative_redirect(web: Server) -> None:
    dns = FakeDNS({"images.example.com": [PRETEND_PUBLIC]})
    assert get(f"http://images.example.com:{web.port}/redirect-relative", resolver=dns) == PNG
    assert [path for path, _ in web.log] == ["/redirect-relative", "/image.png"]
    assert len(dns.calls) == 2, "each hop is checked from scratch"


@pytest.mark.usefixtures("pretend_public")
@pytest.mark.parametrize(
    ("path", "policy", "message", "requests"),
    [
        pytest.param("/redirect-loopback", HTTP, PRIVATE, 1, id="redirect-to-127.0.0.1"),
        pytest.param("/redirect-metadata", HTTP, PRIVATE, 1, id="redirect-to-metadata"),
        pytest.param(
            "/redirect-ftp",
            HTTP,
            "'image' URL must start with http:// or https://",
            1,
            id="redirect-to-ftp",
        ),
        pytest.param(
            "/redirect-nowhere",
            HTTP,
            "'image' URL redirected without a Location",
            1,
            id="redirect-without-location",
        ),
        pytest.param(
            "/loop/0", HTTP, "'image' URL redirected more than 3 times", 4, id="endless-redirects"
        ),
        pytest.param(
            "/loop/0",
            FetchPolicy(allow_http=True, max_redirects=0),
            "'image' URL redirected more than 0 times",
            1,
            id="no-redirects-allowed",
        ),
        pytest.param(
            "/big-declared",
            FetchPolicy(allow_http=True, max_bytes=1000),
            "'image' URL's content is over the limit of 1000 bytes",
            1,
            id="body-over-max-declared",
        ),
        pytest.param(
            "/big-streamed",
            FetchPolicy(allow_http=True, max_bytes=1000),
            "'image' URL's content is over the limit of 1000 bytes",
            1,
            id="body-over-max-streamed",
        ),
        pytest.param(
            "/slow",
            FetchPolicy(allow_http=True, timeout_s=0.3),
            "'image' URL took longer than 0.3 seconds to answer",
            1,
            id="slow-server",
        ),
        pytest.param(
            "/drip",
            FetchPolicy(allow_http=True, timeout_s=0.4),
            "'image' URL took longer than 0.4 seconds to answer",
            1,
            id="drip-feeding-server",
        ),
        pytest.param(
            "/missing", HTTP, "'image' URL answered HTTP 404; expected 200", 1, id="not-found"
        ),
    ],
)
def test_hostile_servers_refused(
    web: Server, path: str, policy: FetchPolicy, message: str, requests: int
) -> None:
    dns = FakeDNS({"images.example.com": [PRETEND_PUBLIC]})
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as caught:
        get(f"http://images.example.com:{web.port}{path}", policy, dns)
    elapsed = time.monotonic() - started
    assert caught.value.message == message
    assert caught.value.details == {"field": "image"}
    assert len(web.log) == requests
    assert elapsed < policy.timeout_s + 1.0


def test_http_refused_by_default_even_when_reachable(web: Server) -> None:
    dns = FakeDNS({"images.example.com": [PRETEND_PUBLIC]})
    with pytest.raises(ValidationFailed, match="must start with https://"):
        get(f"http://images.example.com:{web.port}/image.png", FetchPolicy(), dns)
    assert dns.calls == []
    assert web.log == []


# --- fetch_url over TLS: SNI and certificate checked against the name, not the address --------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates", pytrace=False)
    tmp = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ComfyGate test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=images.example.com"
    )
    (tmp / "leaf.ext").write_text(
        "subjectAltName=DNS:images.example.com\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
    )  # fmt: skip
    return {"ca": tmp / "ca.pem", "cert": tmp / "leaf.pem", "key": tmp / "leaf.key"}


@pytest.fixture
def tls_web(certificates: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    monkeypatch.setattr(egress, "ca_bundle", lambda: str(certificates["ca"]))
    with serve(PRETEND_PUBLIC, context) as server:
        yield server


@pytest.mark.usefixtures("pretend_public")
def test_https_pinned_to_the_address_verifies_the_host_name(tls_web: Server) -> None:
    dns = FakeDNS({"images.example.com": [PRETEND_PUBLIC]})
    data = get(f"https://images.example.com:{tls_web.port}/image.png", FetchPolicy(), dns)
    assert data == PNG
    assert tls_web.sni == ["images.example.com"]
    assert tls_web.log == [("/image.png", f"images.example.com:{tls_web.port}")]


@pytest.mark.usefixtures("pretend_public")
def test_https_certificate_for_another_name_refused(tls_web: Server) -> None:
    dns = FakeDNS({"other.example.com": [PRETEND_PUBLIC]})
    with pytest.raises(ValidationFailed) as caught:
        get(f"https://other.example.com:{tls_web.port}/image.png", FetchPolicy(), dns)
    assert caught.value.message == (
        "'image' URL's TLS connection failed or its certificate is not valid for the host"
    )
    assert tls_web.log == []
