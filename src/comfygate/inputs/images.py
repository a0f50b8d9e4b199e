"""Checking image bytes a client sent, and decoding ``data:`` URIs.

``check_image`` trusts nothing the client said about the bytes (name, content type, media
type of a data URI): Pillow identifies the format from the bytes themselves, restricted to the
allowed formats, and the image is fully decoded once so that truncated or damaged files are
refused here rather than inside ComfyUI.

Decompression bombs are refused from the header, before any pixel is decoded. Pillow's own
guard (``Image.MAX_IMAGE_PIXELS``, ``DecompressionBombWarning``/``Error``) is process-global
state; it is deliberately not changed here (a threaded WSGI server runs many checks at once),
so the check reads the size Pillow parsed from the header and compares it with ``max_pixels``
(never more than Pillow's own limit), and Pillow's bomb errors, and its warning when the
warning filters turn it into an exception, are turned into the same refusal.

Animated or multi-frame images (APNG, animated WebP, multi-picture JPEG) are refused:
ComfyUI's ``LoadImage`` turns every frame into an element of the batch, so a many-frame image
would multiply memory and work beyond what ``max_pixels`` allows.
"""

from __future__ import annotations

import binascii
import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from comfygate.errors import ValidationFailed

# Pillow format id -> (content type, file extension, name for messages), in message order.
_FORMATS: dict[str, tuple[str, str, str]] = {
    "PNG": ("image/png", "png", "PNG"),
    "JPEG": ("image/jpeg", "jpg", "JPEG"),
    "WEBP": ("image/webp", "webp", "WebP"),
}
DEFAULT_FORMATS: frozenset[str] = frozenset(_FORMATS)

_DATA_URI_TYPES: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class CheckedImage:
    """Image bytes that passed ``check_image``, with what was learnt about them."""

    data: bytes
    format: str  # "PNG" | "JPEG" | "WEBP"
    width: int
    height: int
    content_type: str
    sha256: str

    def filename(self) -> str:
        """A name made by the gateway (never the client's): ``cg-<32 hex of sha256>.<ext>``."""
        return f"cg-{self.sha256[:32]}.{_FORMATS[self.format][1]}"


def _names(formats: frozenset[str]) -> str:
    """'PNG, JPEG or WebP' for the allowed formats, in a fixed order."""
    names = [_FORMATS[f][2] for f in _FORMATS if f in formats]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def check_image(
    data: bytes,
    *,
    field: str,
    max_bytes: int,
    max_pixels: int,
    formats: frozenset[str] = DEFAULT_FORMATS,
) -> CheckedImage:
    """Verify that ``data`` is one whole still image of an allowed format, within the limits.

    Raises ``ValidationFailed`` naming ``field`` otherwise. ``formats`` is a subset of
    ``{"PNG", "JPEG", "WEBP"}`` (anything else is a programming error: ``ValueError``).
    """
    unknown = formats - DEFAULT_FORMATS
    if unknown or not formats:
        raise ValueError(f"unsupported image formats: {sorted(unknown) or 'none given'}")
    if not data:
        raise ValidationFailed(f"'{field}' is empty", field=field)
    if len(data) > max_bytes:
        raise ValidationFailed(
            f"'{field}' is {len(data)} bytes, over the limit of {max_bytes} bytes", field=field
        )
    pillow_limit = Image.MAX_IMAGE_PIXELS
    pixel_limit = max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)
    names = _names(formats)
    order = [f for f in _FORMATS if f in formats]
    fmt = ""

    try:
        with Image.open(io.BytesIO(data), formats=order) as probe:
            # Only the header has been read so far: nothing is decoded before this check.
            fmt = probe.format or ""
            width, height = probe.size
            # n_frames comes from the header (APNG acTL, WebP ANIM, MPO index).
            frames = int(getattr(probe, "n_frames", 1))
            if frames > 1:
                raise ValidationFailed(
                    f"'{field}' is animated or has several frames ({frames}); "
                    "send a single still image",
                    field=field,
                )
            if fmt not in formats:  # e.g. a format Pillow derives from an allowed one
                raise ValidationFailed(f"'{field}' is not a {names} image", field=field)
            if width <= 0 or height <= 0:
                raise ValidationFailed(f"'{field}' has no pixels", field=field)
            if width * height > pixel_limit:
                raise ValidationFailed(
                    f"'{field}' is {width}x{height} pixels, over the limit of {pixel_limit}",
                    field=field,
                )
            probe.verify()
        # verify() leaves the image unusable and does not decode pixels everywhere (JPEG,
        # WebP): open again and decode, which catches truncated and damaged data.
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            image.load()
    except ValidationFailed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationFailed(
            f"'{field}' has more pixels than the limit of {pixel_limit}", field=field
        ) from None
    except UnidentifiedImageError:
        raise ValidationFailed(f"'{field}' is not a {names} image", field=field) from None
    except Exception:
        # Pillow's decoders report damage with many exception types (OSError, SyntaxError,
        # ValueError, EOFError, struct.error, ...): all mean the same thing here.
        kind = f"{_FORMATS[fmt][2]} image" if fmt in _FORMATS else "image"
        raise ValidationFailed(f"'{field}' is a damaged or truncated {kind}", field=field) from None

    content_type = _FORMATS[fmt][0]
    digest = hashlib.sha256(data).hexdigest()
    return CheckedImage(data, fmt, width, height, content_type, digest)


def decode_data_uri(value: str, *, field: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:image/png;base64,...`` URI (PNG, JPEG or WebP media type).

    Strict: base64 only (no URL-safe alphabet, no whitespace, correct padding), and the size
    is checked from the encoded length before anything is decoded. The media type is only a
    first filter: the caller still runs ``check_image`` on the bytes.
    """
    example = "data:image/png;base64,..."
    if not isinstance(value, str):
        raise ValidationFailed(f"'{field}' must be a string ({example})", field=field)
    head, comma, payload = value.partition(",")
    if not comma or head[:5].lower() != "data:":
        raise ValidationFailed(f"'{field}' is not a data: URI ({example})", field=field)
    params = [p.strip().lower() for p in head[5:].split(";")]
    if params[0] not in _DATA_URI_TYPES:
        raise ValidationFailed(
            f"'{field}' data URI must have the media type image/png, image/jpeg or image/webp",
            field=field,
        )
    if len(params) < 2 or params[-1] != "base64" or any("=" not in p for p in params[1:-1]):
        raise ValidationFailed(
            f"'{field}' data URI must be base64-encoded ({example})", field=field
        )
    if not payload:
        raise ValidationFailed(f"'{field}' data URI has no data", field=field)

    # Size from the encoded length, before decoding: 4 characters carry 3 bytes.
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    decoded_size = len(payload) // 4 * 3 - padding
    if decoded_size > max_bytes:
        raise ValidationFailed(
            f"'{field}' is {decoded_size} bytes once decoded, over the limit of {max_bytes} bytes",
            field=field,
        )
    invalid = ValidationFailed(f"'{field}' data URI is not valid base64", field=field)
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        raise invalid from None
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        raise invalid from None
