"""How big the images of a raw workflow can get: an upper bound on the batch and the size of
every image, latent, mask or video value, worked out node by node before the graph runs.

Sizes are in image pixels (a latent counts as the image it decodes to); a batch counts images,
or the frames of a video. Sources set them (``EmptyImage``, ``EmptyLatentImage``,
``EmptySD3LatentImage``, the video latents...: ``width``, ``height``, ``batch_size``,
``length``; a LoadImage: the checked image). ``RULES`` says how each node that changes them
does: ``RepeatLatentBatch`` and ``RepeatImageBatch`` multiply the batch; ``ImageBatch``,
``LatentBatch`` and ``LatentConcat`` add up; ``ImageScale``, ``LatentUpscale``,
``ImageScaleBy``, ``LatentUpscaleBy``, ``ImagePadForOutpaint``, ``ImageStitch``,
``ImageGrid``... set or grow the size. Every other node of ComfyUI 0.3.75 that outputs images
(``PASS_THROUGH``: samplers, decoders, crops, filters) passes on the largest of its inputs,
which bounds what it makes. What cannot be known before the graph runs (an upscale model's
factor, a ``0`` that keeps the aspect ratio, an image resized to match another, a value from
a node that is not a constant) is None, with the reason in ``why``. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfygate.templates.graph_values import Unknown, as_number, clamp, resolve
from comfygate.templates.raw import IMAGE_INPUT, IMAGE_NODE, is_link
from comfygate.templates.raw_nodes import DEFAULT_ALLOWED

# FluxKontextImageScale picks one of these sizes (ComfyUI's PREFERED_KONTEXT_RESOLUTIONS).
_KONTEXT_SIDE, _KONTEXT_AREA = 1568, 672 * 1568


@dataclass(frozen=True)
class Shape:
    """Upper bounds for one image-like value; None where it cannot be known (``why``)."""

    batch: int | None
    width: int | None
    height: int | None
    area: int | None = None  # a bound on width x height known apart from them
    why: str = ""

    @property
    def pixels(self) -> int | None:
        if self.width is None or self.height is None:
            return self.area
        product = self.width * self.height
        return product if self.area is None else min(product, self.area)


@dataclass
class Graph:
    """The graph being sized: its nodes, the checked images by name, the shapes so far."""

    nodes: dict[str, dict[str, Any]]
    image_sizes: Mapping[str, tuple[int, int]]
    shapes: dict[str, Shape] = field(default_factory=dict)


class Node:
    """One node as a shape rule sees it: its resolved inputs and the shapes linked in."""

    def __init__(self, graph: Graph, node_id: str) -> None:
        self.graph = graph
        self.id = node_id
        self.class_type: str = graph.nodes[node_id]["class_type"]
        self.inputs: dict[str, Any] = graph.nodes[node_id]["inputs"]
        self.why = ""

    def value(self, name: str) -> Any:
        return resolve(self.graph.nodes, self.inputs.get(name))

    def shapes(self, *names: str) -> list[Shape]:
        """The shapes linked into the named inputs (every input when none is named)."""
        found = []
        for name, value in self.inputs.items():
            if (not names or name in names) and is_link(value):
                shape = self.graph.shapes.get(value[0])
                if shape is not None:
                    found.append(shape)
        return found

    def number(self, name: str, default: float | None = None) -> float | None:
        """The input's value as a number; None (with ``why``) when it cannot be known."""
        if name not in self.inputs:
            return default
        value = self.value(name)
        if isinstance(value, Unknown):
            self.why = self.why or (
                f"node {self.id!r} ({self.class_type}) input {name!r} comes from node "
                f"{value.node_id!r} ({value.class_type}), whose output cannot be known before "
                "the workflow runs: give a number, or link a Primitive node"
            )
            return None
        number = as_number(value)
        return default if number is None else number

    def unknown(self, why: str) -> Shape:
        """A size that cannot be known; the batch still is, when the inputs' is."""
        batches = [s.batch for s in self.shapes()]
        known = [b for b in batches if b is not None]
        batch = max(known) if known and len(known) == len(batches) else None
        reason = self.why or f"node {self.id!r} ({self.class_type}): {why}"
        return Shape(batch, None, None, why=reason)

    def shape(
        self,
        batch: float | None,
        width: float | None,
        height: float | None,
        area: float | None = None,
        base: Shape | None = None,
    ) -> Shape:
        """A shape from bounds (rounded up); ``base``: the input it came from, whose reason
        carries over when something is unknown."""

        def up(v: float | None) -> int | None:
            return None if v is None else max(0, math.ceil(v))

        why = self.why or (base.why if base is not None else "")
        if not why and (batch is None or width is None or height is None) and area is None:
            why = f"node {self.id!r} ({self.class_type}): its size cannot be known before it runs"
        return Shape(up(batch), up(width), up(height), up(area), why)

    def rebatch(self, base: Shape, batch: float | None) -> Shape:
        """``base`` with another batch."""
        return self.shape(batch, base.width, base.height, base.area, base)


def largest(shapes: list[Shape], node: Node) -> Shape:
    """What a node that never grows its inputs makes: the largest of them."""
    if not shapes:
        return node.unknown("its images come from nodes whose size the gateway cannot know")
    unknown = [s for s in shapes if s.batch is None or s.pixels is None]

    def most(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    return Shape(
        most([s.batch for s in shapes]),
        most([s.width for s in shapes]),
        most([s.height for s in shapes]),
        most([s.pixels for s in shapes]) if any(s.area is not None for s in shapes) else None,
        unknown[0].why if unknown else "",
    )


def _times(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else clamp(a * b)


def _plus(*values: float | None) -> float | None:
    if any(v is None for v in values):
        return None
    return clamp(sum(v for v in values if v is not None))


Rule = Callable[[Node], Shape]


def _source(frames: str | None = None, batch: str = "batch_size") -> Rule:
    """A node that makes a new value of ``width`` x ``height``, ``batch`` x ``frames``."""

    def rule(node: Node) -> Shape:
        count = node.number(batch, 1)
        if frames is not None:
            count = _times(count, node.number(frames, 1))
        return node.shape(count, node.number("width"), node.number("height"))

    return rule


def _no_pixels(node: Node) -> Shape:
    """Audio and 3D latents: a batch, no image pixels."""
    return node.shape(node.number("batch_size", 1), 0, 0)


def _repeat(node: Node) -> Shape:
    base = largest(node.shapes(), node)
    return node.rebatch(base, _times(base.batch, node.number("amount", 1)))


def _concat_batches(node: Node) -> Shape:
    shapes = node.shapes()
    base = largest(shapes, node)
    return node.rebatch(base, _plus(*[s.batch for s in shapes]))


def _latent_concat(node: Node) -> Shape:
    shapes, dim = node.shapes(), str(node.value("dim"))
    base = largest(shapes, node)
    width = _plus(*[s.width for s in shapes]) if "x" in dim else base.width
    height = _plus(*[s.height for s in shapes]) if "y" in dim else base.height
    batch = _plus(*[s.batch for s in shapes]) if "t" in dim else base.batch
    return node.shape(batch, width, height, base=base)


def _resize(node: Node) -> Shape:
    """``width`` and ``height`` set the size; a 0 keeps the aspect ratio (unknown)."""
    base = largest(node.shapes(), node)
    width, height = node.number("width"), node.number("height")
    if width == 0 and height == 0:
        return base
    if width == 0 or height == 0:
        return node.unknown(
            "a 0 width or height keeps the input's aspect ratio, so the size "
            "cannot be known before the workflow runs: give both"
        )
    return node.shape(base.batch, width, height, base=base)


def _scale(factor: str) -> Rule:
    def rule(node: Node) -> Shape:
        base = largest(node.shapes(), node)
        by = node.number(factor, 1)
        area = _times(base.area, _times(by, by))
        return node.shape(base.batch, _times(base.width, by), _times(base.height, by), area, base)

    return rule


def _square(side: str) -> Rule:
    """The longer side becomes ``side``: both sides are at most that."""

    def rule(node: Node) -> Shape:
        base = largest(node.shapes(), node)
        length = node.number(side)
        return node.shape(base.batch, length, length, base=base)

    return rule


def _total_pixels(node: Node) -> Shape:
    base = largest(node.shapes(), node)
    megapixels = node.number("megapixels", 1)
    if megapixels is None or base.batch is None:
        return node.unknown("its size cannot be known before the workflow runs")
    # ComfyUI rounds each side: a little over the target, never much.
    area = math.ceil(megapixels * 1024 * 1024 * 1.01) + 2
    return Shape(base.batch, None, None, area)


def _pad(node: Node) -> Shape:
    base = largest(node.shapes("image"), node)
    width = _plus(base.width, node.number("left", 0), node.number("right", 0))
    height = _plus(base.height, node.number("top", 0), node.number("bottom", 0))
    return node.shape(base.batch, width, height, base=base)


def _stitch(node: Node) -> Shape:
    one, two = node.shapes("image1"), node.shapes("image2")
    if not two:
        return largest(one, node)
    if node.value("match_image_size") is not False:
        return node.unknown(
            "image2 is resized to match image1, so the size cannot be known "
            "before the workflow runs: set match_image_size to false"
        )
    a, b = largest(one, node), largest(two, node)
    spacing = node.number("spacing_width", 0)
    batch = None if a.batch is None or b.batch is None else max(a.batch, b.batch)
    if str(node.value("direction")) in ("left", "right"):
        height = None if a.height is None or b.height is None else max(a.height, b.height)
        return node.shape(batch, _plus(a.width, b.width, spacing), height)
    width = None if a.width is None or b.width is None else max(a.width, b.width)
    return node.shape(batch, width, _plus(a.height, b.height, spacing))


def _grid(node: Node) -> Shape:
    base = largest(node.shapes(), node)
    columns = node.number("columns", 4)
    padding = node.number("padding", 0)
    if base.batch is None or columns is None or columns < 1 or padding is None:
        return node.unknown("its size cannot be known before the workflow runs")
    rows = math.ceil(base.batch / columns)
    width = _plus(_times(columns, node.number("cell_width", 256)), (columns + 1) * padding)
    height = _plus(_times(rows, node.number("cell_height", 256)), (rows + 1) * padding)
    return node.shape(1, width, height)


def _kontext(node: Node) -> Shape:
    base = largest(node.shapes(), node)
    return Shape(base.batch, _KONTEXT_SIDE, _KONTEXT_SIDE, _KONTEXT_AREA, base.why)


def _extend_video(node: Node) -> Shape:
    base = largest(node.shapes("video_latent"), node)
    return node.rebatch(base, _plus(base.batch, node.number("length", 1)))


def _frames_of(frames: str) -> Rule:
    """SVD-like conditioning: a latent video of ``frames`` frames of ``width`` x ``height``."""

    def rule(node: Node) -> Shape:
        return node.shape(node.number(frames, 1), node.number("width"), node.number("height"))

    return rule


def _unsizable(why: str) -> Rule:
    return lambda node: node.unknown(why)


def _load_image(node: Node) -> Shape:
    size = node.graph.image_sizes.get(str(node.inputs.get(IMAGE_INPUT)))
    if size is None:
        return node.unknown("the image is not one the gateway checked")
    return Shape(1, size[0], size[1])


def _words(text: str) -> list[str]:
    """A list of node names written as words (a column each would take 90 lines)."""
    return text.split()


_VIDEO_SOURCES = _words("""
CosmosImageToVideoLatent CosmosPredict2ImageToVideoLatent EmptyCosmosLatentVideo
EmptyHunyuanLatentVideo EmptyHunyuanVideo15Latent EmptyLTXVLatentVideo EmptyMochiLatentVideo
HunyuanImageToVideo HunyuanVideo15ImageToVideo LTXVImgToVideo Wan22FunControlToVideo
Wan22ImageToVideoLatent WanAnimateToVideo WanCameraImageToVideo WanFirstLastFrameToVideo
WanFunControlToVideo WanFunInpaintToVideo WanHuMoImageToVideo WanImageToVideo
WanPhantomSubjectToVideo WanSoundImageToVideo WanTrackToVideo WanVaceToVideo
""")
_IMAGE_SOURCES = _words("""
EmptyImage EmptyLatentImage EmptySD3LatentImage EmptyChromaRadianceLatentImage
EmptyFlux2LatentImage EmptyHunyuanImageLatent StableCascade_EmptyLatentImage
StableZero123_Conditioning StableZero123_Conditioning_Batched
""")
_UPSCALE_MODEL = "its size depends on the upscale model, which cannot be known before it runs"

RULES: dict[str, Rule] = {
    **dict.fromkeys(_IMAGE_SOURCES, _source()),
    **dict.fromkeys(_VIDEO_SOURCES, _source(frames="length")),
    "SolidMask": lambda node: node.shape(1, node.number("width"), node.number("height")),
    "SVD_img2vid_Conditioning": _frames_of("video_frames"),
    "SV3D_Conditioning": _frames_of("video_frames"),
    "EmptyAceStepLatentAudio": _no_pixels,
    "EmptyLatentHunyuan3Dv2": _no_pixels,
    IMAGE_NODE: _load_image,
    "RepeatLatentBatch": _repeat,
    "RepeatImageBatch": _repeat,
    "ImageBatch": _concat_batches,
    "LatentBatch": _concat_batches,
    "LTXVAddGuide": _concat_batches,
    "LatentConcat": _latent_concat,
    "WanSoundImageToVideoExtend": _extend_video,
    "ImageScale": _resize,
    "LatentUpscale": _resize,
    "HunyuanVideo15LatentUpscaleWithModel": _resize,
    "ResizeAndPadImage": lambda node: node.shape(
        largest(node.shapes(), node).batch,
        node.number("target_width"),
        node.number("target_height"),
    ),
    "ImageScaleBy": _scale("scale_by"),
    "LatentUpscaleBy": _scale("scale_by"),
    "SD_4XUpscale_Conditioning": _scale("scale_ratio"),
    "ImageScaleToMaxDimension": _square("largest_size"),
    "ResizeImagesByLongerEdge": _square("longer_edge"),
    "ImageScaleToTotalPixels": _total_pixels,
    "ImagePadForOutpaint": _pad,
    "ImageStitch": _stitch,
    "ImageGrid": _grid,
    "FluxKontextImageScale": _kontext,
    "ImageUpscaleWithModel": _unsizable(_UPSCALE_MODEL),
    "StableCascade_SuperResolutionControlnet": _unsizable(_UPSCALE_MODEL),
    "HunyuanVideo15SuperResolution": _unsizable(_UPSCALE_MODEL),
    "ResizeImagesByShorterEdge": _unsizable(
        "the longer edge follows the input's aspect ratio, which cannot be known before it runs"
    ),
}
# ComfyUI 0.3.75's other nodes that output images, latents, masks or videos: none makes its
# output larger, or its batch longer, than the largest of its inputs.
PASS_THROUGH = frozenset(
    _words("""
AddNoise AdjustBrightness AdjustContrast Canny CenterCropImages CreateVideo CropMask
FeatherMask GetVideoComponents GrowMask HunyuanRefinerLatent ImageAddNoise ImageBlend
ImageBlur ImageColorToMask ImageCompositeMasked ImageCrop ImageDeduplication ImageFlip
ImageFromBatch ImageInvert ImageQuantize ImageRGBToYUV ImageRotate ImageSharpen ImageToMask
ImageYUVToRGB InpaintModelConditioning InstructPixToPixConditioning InvertMask
JoinImageWithAlpha KSampler KSamplerAdvanced LTXVCropGuides LTXVPreprocess LatentAdd
LatentApplyOperation LatentBatchSeedBehavior LatentBlend LatentComposite LatentCompositeMasked
LatentCrop LatentCut LatentFlip LatentFromBatch LatentInterpolate LatentMultiply LatentRotate
LatentSubtract MakeTrainingDataset MaskComposite MaskToImage MergeImageLists Morphology
NormalizeImages PorterDuffImageComposite RandomCropImages RebatchImages RebatchLatents
SamplerCustom SamplerCustomAdvanced SetLatentNoiseMask ShuffleDataset ShuffleImageTextDataset
SplitImageWithAlpha StableCascade_StageC_VAEEncode ThresholdMask TrimVideoLatent VAEDecode
VAEDecodeTiled VAEEncode VAEEncodeForInpaint VAEEncodeTiled
""")
)
SHAPED = frozenset(RULES) | PASS_THROUGH


def shape_of(graph: Graph, node_id: str) -> Shape | None:
    """The node's output shape (its inputs' already in ``graph.shapes``); None: no images."""
    node = Node(graph, node_id)
    rule = RULES.get(node.class_type)
    if rule is not None:
        return rule(node)
    if node.class_type in PASS_THROUGH:
        return largest(node.shapes(), node)
    if node.class_type not in DEFAULT_ALLOWED:
        # A custom node the operator allowed: taken to pass on the largest of its inputs.
        shapes = node.shapes()
        return largest(shapes, node) if shapes else None
    return None  # a model, a conditioning, a string...: no images
