"""Node execution: what each node class of the catalogue does when a prompt runs.

:data:`NODES` maps a class type to its ``FUNCTION`` (the name ComfyUI's tracebacks show) and
a handler. A handler gets the run it belongs to (:class:`RunContext`), the node id and the
node's inputs with links resolved, and returns ``(outputs, ui)``: the tuple of output values
and the ``ui`` dict of an output node (None for the others). A handler that meets a value of
the wrong type fails the way the real node would (an AttributeError naming the attribute the
real code reads first).
"""

from __future__ import annotations

import io
import json
import posixpath
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from .folders import Folders, annotated_filepath
from .tracebacks import BASE_DIR, TB_LOAD_IMAGE, TB_SAVE_OUTSIDE
from .values import Clip, Conditioning, Images, Latent, Mask, Model, Vae, noise_image, png_bytes

_PREVIEW_RANDOM_LETTERS = "abcdefghijklmnopqrstupvxyz"  # sic, as in ComfyUI's PreviewImage

NodeResult = tuple[tuple[Any, ...], dict[str, Any] | None]


class RunContext(Protocol):
    """What a node sees of the prompt run that executes it."""

    @property
    def prompt(self) -> dict[str, Any]: ...

    @property
    def extra_data(self) -> dict[str, Any]: ...

    @property
    def folders(self) -> Folders: ...

    @property
    def previews(self) -> bool:
        """Whether sampler steps come with a preview frame."""

    @property
    def step_time_s(self) -> float: ...

    async def busy(self, seconds: float) -> None:
        """Spend ``seconds`` computing (an interrupt raises)."""

    def sampler_step(self, node_id: str, step: int, steps: int, preview: bytes | None) -> None:
        """Report a finished sampler step, with its JPEG preview frame if any."""


Handler = Callable[[RunContext, str, dict[str, Any]], Awaitable[NodeResult]]


class NodeError(Exception):
    """A node failed at run time (becomes an ``execution_error``)."""

    def __init__(self, exception_type: str, message: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = traceback
        self.current_inputs: dict[str, Any] = {}


_T = TypeVar("_T")


def _expect(value: Any, cls: type[_T], attribute: str) -> _T:
    """``value`` if it is a ``cls``; else the AttributeError the real node would raise when it
    reads ``value.attribute``."""
    if not isinstance(value, cls):
        raise AttributeError(f"'{type(value).__name__}' object has no attribute '{attribute}'")
    return value


# -- images ----------------------------------------------------------------------------------


async def _empty_image(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    color = int(inputs["color"])
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    image = Image.new("RGB", (int(inputs["width"]), int(inputs["height"])), rgb)
    return (Images([image] * int(inputs["batch_size"])),), None


def _invert(frame: Image.Image, inputs: dict[str, Any]) -> Image.Image:
    return ImageOps.invert(frame.convert("RGB"))


def _scale(frame: Image.Image, inputs: dict[str, Any]) -> Image.Image:
    """ComfyUI's ImageScale: 0 keeps a side (or follows the other's ratio); ``center`` crops
    to the target's aspect ratio first."""
    width, height = int(inputs["width"]), int(inputs["height"])
    old_w, old_h = frame.size
    if width == 0 and height == 0:
        return frame
    if width == 0:
        width = max(1, round(old_w * height / old_h))
    elif height == 0:
        height = max(1, round(old_h * width / old_w))
    if inputs.get("crop") == "center":
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        frame = frame.crop((x, y, old_w - x, old_h - y))
    return frame.resize((width, height))


def _frame_by_frame(
    attribute: str, transform: Callable[[Image.Image, dict[str, Any]], Image.Image]
) -> Handler:
    """A node that applies ``transform`` to each frame of its ``image`` input (``attribute``:
    what the real node reads first of that input)."""

    async def handler(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
        images = _expect(inputs["image"], Images, attribute)
        return (Images([transform(f, inputs) for f in images.frames]),), None

    return handler


def _compute_vars(text: str, width: int, height: int) -> str:
    """SaveImage's ``%width%``, ``%year%``, ... in a filename prefix."""
    text = text.replace("%width%", str(width)).replace("%height%", str(height))
    now = time.localtime()
    text = text.replace("%year%", str(now.tm_year))
    text = text.replace("%month%", str(now.tm_mon).zfill(2))
    text = text.replace("%day%", str(now.tm_mday).zfill(2))
    text = text.replace("%hour%", str(now.tm_hour).zfill(2))
    text = text.replace("%minute%", str(now.tm_min).zfill(2))
    return text.replace("%second%", str(now.tm_sec).zfill(2))


def _save_images(
    run: RunContext, images: Images, filename_prefix: str, folder: str, compress_level: int
) -> dict[str, Any]:
    """SaveImage's ``save_images``: numbered PNG files with the prompt in their metadata."""
    width, height = images.frames[0].size
    if "%" in filename_prefix:
        filename_prefix = _compute_vars(filename_prefix, width, height)
    norm = posixpath.normpath(filename_prefix)
    subfolder, filename = posixpath.split(norm)
    base = "/__comfy_base__"
    output_dir = f"{base}/{folder}"
    full_output_folder = posixpath.normpath(posixpath.join(output_dir, subfolder))
    common = posixpath.commonpath([output_dir, full_output_folder])
    if common != output_dir:
        err = (
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {full_output_folder}"
            f"\n         output_dir: {output_dir}"
            f"\n         commonpath: {common}"
        ).replace(base, BASE_DIR)
        raise NodeError("Exception", err, list(TB_SAVE_OUTSIDE))
    subfolder = posixpath.relpath(full_output_folder, output_dir)
    subfolder = "" if subfolder == "." else subfolder
    folders = run.folders

    counters = []
    for name in folders.names_in(folder, subfolder):
        prefix = name[: len(filename) + 1]
        try:
            digits = int(name[len(filename) + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        if prefix[:-1] == filename and prefix[-1:] == "_":
            counters.append(digits)
    counter = max(counters) + 1 if counters else 1

    metadata = {"prompt": json.dumps(run.prompt)}
    extra_pnginfo = run.extra_data.get("extra_pnginfo")
    if isinstance(extra_pnginfo, dict):
        metadata.update({k: json.dumps(v) for k, v in extra_pnginfo.items()})
    results = []
    for batch_number, image in enumerate(images.frames):
        name = filename.replace("%batch_num%", str(batch_number))
        file = f"{name}_{counter:05}_.png"
        folders.put(folder, subfolder, file, png_bytes(image, metadata, compress_level))
        results.append({"filename": file, "subfolder": subfolder, "type": folder})
        counter += 1
    return {"images": results}


async def _save_image(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    images = _expect(inputs["images"], Images, "shape")
    return (), _save_images(run, images, str(inputs["filename_prefix"]), "output", 4)


async def _preview_image(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    images = _expect(inputs["images"], Images, "shape")
    suffix = "".join(random.choice(_PREVIEW_RANDOM_LETTERS) for _ in range(5))  # noqa: S311
    return (), _save_images(run, images, f"ComfyUI_temp_{suffix}", "temp", 1)


async def _load_image(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    image = str(inputs["image"])
    data = run.folders.resolve_annotated(image)
    name, folder = annotated_filepath(image)
    path = f"{BASE_DIR}/{folder or 'input'}/{name}"
    if data is None:
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            rgb = opened.convert("RGB")
            if "A" in opened.getbands():
                mask = ImageOps.invert(opened.getchannel("A"))
            else:
                mask = Image.new("L", (64, 64), 0)
    except UnidentifiedImageError as ex:
        raise NodeError(
            "PIL.UnidentifiedImageError",
            f"cannot identify image file '{path}'",
            list(TB_LOAD_IMAGE),
        ) from ex
    return (Images([rgb]), Mask([mask])), None


# -- models, conditioning and latents --------------------------------------------------------


async def _load_checkpoint(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    name = str(inputs["ckpt_name"])
    return (Model(name), Clip(name), Vae(name)), None


async def _clip_text_encode(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    if not isinstance(inputs.get("clip"), Clip):
        raise RuntimeError(
            f"ERROR: clip input is invalid: {inputs.get('clip')}\n\nIf the clip is from a "
            "checkpoint loader node your checkpoint does not contain a valid clip or text "
            "encoder model."
        )
    return (Conditioning(str(inputs["text"])),), None


async def _empty_latent(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    latent = Latent(
        int(inputs["width"]) // 8, int(inputs["height"]) // 8, int(inputs["batch_size"])
    )
    return (latent,), None


def _preview_jpeg(latent: Latent, seed: int) -> bytes:
    """A sampler step's preview frame: seeded noise at latent size."""
    image = noise_image(max(1, latent.width), max(1, latent.height), seed)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


async def _ksampler(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    _expect(inputs.get("model"), Model, "model_sampling")
    latent = _expect(inputs.get("latent_image"), Latent, "get")
    steps = int(inputs["steps"])
    seed = int(inputs["seed"])
    for step in range(1, steps + 1):
        await run.busy(run.step_time_s)
        preview = _preview_jpeg(latent, seed * 10007 + step) if run.previews else None
        run.sampler_step(node_id, step, steps, preview)
    return (Latent(latent.width, latent.height, latent.batch, seed),), None


async def _vae_decode(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    samples = _expect(inputs["samples"], Latent, "get")
    _expect(inputs["vae"], Vae, "decode")
    seed = samples.seed if samples.seed is not None else 0
    frames = [
        noise_image(max(1, samples.width * 8), max(1, samples.height * 8), seed + i)
        for i in range(samples.batch)
    ]
    return (Images(frames),), None


async def _vae_encode(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    pixels = _expect(inputs["pixels"], Images, "shape")
    _expect(inputs["vae"], Vae, "encode")
    width, height = pixels.frames[0].size
    return (Latent(width // 8, height // 8, len(pixels.frames)),), None


async def _repeat_latent(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    samples = _expect(inputs["samples"], Latent, "get")
    amount = int(inputs["amount"])
    return (Latent(samples.width, samples.height, samples.batch * amount, samples.seed),), None


async def _primitive(run: RunContext, node_id: str, inputs: dict[str, Any]) -> NodeResult:
    return (inputs["value"],), None


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    function: str  # the FUNCTION of ComfyUI's node class: the frame a failure's traceback ends in
    run: Handler


NODES: dict[str, Node] = {
    "EmptyImage": Node("generate", _empty_image),
    "ImageInvert": Node("invert", _frame_by_frame("shape", _invert)),
    "SaveImage": Node("save_images", _save_image),
    "PreviewImage": Node("save_images", _preview_image),
    "LoadImage": Node("load_image", _load_image),
    "EmptyLatentImage": Node("generate", _empty_latent),
    "CLIPTextEncode": Node("encode", _clip_text_encode),
    "KSampler": Node("sample", _ksampler),
    "VAEDecode": Node("decode", _vae_decode),
    "VAEEncode": Node("encode", _vae_encode),
    "CheckpointLoaderSimple": Node("load_checkpoint", _load_checkpoint),
    "ImageScale": Node("upscale", _frame_by_frame("movedim", _scale)),
    "RepeatLatentBatch": Node("repeat", _repeat_latent),
    "PrimitiveInt": Node("execute", _primitive),
}


def function_of(class_type: str) -> str:
    """The name of the node's function in tracebacks."""
    node = NODES.get(class_type)
    return node.function if node is not None else "execute"


async def run_node(
    run: RunContext, node_id: str, class_type: str, inputs: dict[str, Any]
) -> NodeResult:
    node = NODES.get(class_type)
    if node is None:
        raise NotImplementedError(class_type)
    return await node.run(run, node_id, inputs)
