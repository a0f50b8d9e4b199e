"""What a stored file is called and what it is: gateway-made names, the content type served
for each extension, and an image's size read from its header. Every storage uses these, so
a file has the same name and type wherever it lives."""

from __future__ import annotations

import io
import mimetypes
import re
import warnings
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

# Extensions ComfyUI output nodes write, with the content type served for each.
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".glb": "model/gltf-binary",
}


def output_name(node_id: str, index: int, comfy_filename: str) -> str:
    """A safe name for the index-th file of a node, keeping only a known extension."""
    ext = PurePosixPath(comfy_filename).suffix.lower()
    if ext not in CONTENT_TYPES:
        ext = ".bin"
    node = re.sub(r"[^A-Za-z0-9_-]", "_", node_id)[:40] or "node"
    return f"{node}-{index}{ext}"


def content_type(name: str) -> str:
    ext = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def image_size(source: Path | bytes | None) -> tuple[int, int] | None:
    """(width, height) of an image file, or of the first bytes of one, read from its header
    only; None if it is not an image Pillow knows."""
    if source is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                return image.size
        except Image.DecompressionBombError:
            return (Image.MAX_IMAGE_PIXELS or 1 << 30, 2)  # past Pillow's own bomb limit
        except (UnidentifiedImageError, OSError):
            return None
