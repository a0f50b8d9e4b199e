"""The values that flow between the fake's nodes (IMAGE, MASK, LATENT, MODEL, CLIP, VAE,
CONDITIONING) and the images they turn into.

``str()`` of each value is what ComfyUI prints for the real object, because that text appears
in the ``current_inputs`` of an ``execution_error``.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

from PIL import Image, PngImagePlugin

_EDGE_ITEMS = 3


def _tensor_repr(frames: Sequence[Image.Image]) -> str:
    """``str()`` of the [B, H, W, 3] float tensor ComfyUI would hold (torch print layout)."""
    if not frames:
        return "tensor([])"
    rgb = [f.convert("RGB") for f in frames]
    width, height = rgb[0].size
    shape = (len(rgb), height, width, 3)
    summarize = math.prod(shape) > 1000

    def indices(n: int) -> list[int | None]:
        if not summarize or n <= 2 * _EDGE_ITEMS:
            return list(range(n))
        return [*range(_EDGE_ITEMS), None, *range(n - _EDGE_ITEMS, n)]

    def pixel(b: int, y: int, x: int) -> tuple[float, ...]:
        px = cast("tuple[int, ...]", rgb[b].getpixel((x, y)))
        return tuple(c / 255 for c in px[:3])

    values = [
        c
        for b in indices(shape[0])
        if b is not None
        for y in indices(height)
        if y is not None
        for x in indices(width)
        if x is not None
        for c in pixel(b, y, x)
    ]
    int_mode = all(float(v).is_integer() for v in values)

    def fmt(v: float) -> str:
        return f"{v:.0f}." if int_mode else f"{v:.4f}"

    cell_width = max(len(fmt(v)) for v in values)

    def render(path: tuple[int, ...], indent: int) -> str:
        dim = len(path)
        if dim == 3:
            cells = [fmt(v).rjust(cell_width) for v in pixel(*path)]
            return "[" + ", ".join(cells) + "]"
        parts = [
            "..." if i is None else render((*path, i), indent + 1) for i in indices(shape[dim])
        ]
        separator = "," + "\n" * (3 - dim) + " " * (indent + 1)
        return "[" + separator.join(parts) + "]"

    return "tensor(" + render((), len("tensor(")) + ")"


@dataclass(eq=False)
class Images:
    """An IMAGE value: a batch of RGB pictures."""

    frames: list[Image.Image]

    def __str__(self) -> str:
        return _tensor_repr(self.frames)


@dataclass(eq=False)
class Mask:
    """A MASK value."""

    frames: list[Image.Image]

    def __str__(self) -> str:
        if not self.frames:
            return "tensor([])"
        w, h = self.frames[0].size
        return f"tensor(<mask {len(self.frames)}x{h}x{w}>)"


@dataclass(frozen=True)
class Latent:
    """A LATENT value (sizes in latent pixels, i.e. image pixels / 8)."""

    width: int
    height: int
    batch: int
    seed: int | None = None

    def __str__(self) -> str:
        return f"{{'samples': tensor(<latent {self.batch}x4x{self.height}x{self.width}>)}}"


@dataclass(frozen=True)
class _CheckpointPart:
    """One of the three things CheckpointLoaderSimple loads from a checkpoint."""

    ckpt_name: str
    printed: ClassVar[str]

    def __str__(self) -> str:
        return self.printed


class Model(_CheckpointPart):
    printed = "<comfy.model_patcher.ModelPatcher object>"


class Clip(_CheckpointPart):
    printed = "<comfy.sd.CLIP object>"


class Vae(_CheckpointPart):
    printed = "<comfy.sd.VAE object>"


@dataclass(frozen=True)
class Conditioning:
    text: str

    def __str__(self) -> str:
        return "[[tensor(<conditioning 1x77x768>), {'pooled_output': tensor(<1x768>)}]]"


def png_bytes(
    image: Image.Image, metadata: dict[str, str] | None = None, compress_level: int = 4
) -> bytes:
    """``image`` as a PNG file, with ``metadata`` as text chunks (like SaveImage writes)."""
    info = None
    if metadata:
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """Seeded RGB noise: what the fake "decodes" from a latent."""
    rng = random.Random(seed)  # noqa: S311 - test data, not crypto
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
