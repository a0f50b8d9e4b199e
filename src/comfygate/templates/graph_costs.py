"""What a raw workflow will cost, worked out from the graph before anything runs.

``CostLimits.check`` bounds parameters by name. A raw workflow is a graph: the value a node
receives may come through a link, and a batch may be multiplied on its way. So, whenever a
limit is set:

* **Values.** An input's value is its literal, or, through links, the ``value`` of a
  ``Primitive*`` node (chains followed); a numeric string counts as the number ComfyUI will
  make of it. Any other node's output (``GetImageSize``, ``StringLength``...) cannot be known
  before the graph runs: an input that a limit applies to and that takes such a value is
  refused (400 ``validation_error``, naming the input and the limit).
* **Shapes.** Every image, latent, mask or video gets an upper bound on its batch (images, or
  frames of a video) and on its width and height, in image pixels: from its source
  (``EmptyImage``, ``EmptyLatentImage``, ``EmptySD3LatentImage``, the video latents...:
  ``width``, ``height``, ``batch_size``, ``length``; a LoadImage: the checked image), and
  through every node that changes them: ``RepeatLatentBatch`` and ``RepeatImageBatch``
  multiply the batch, ``ImageBatch``, ``LatentBatch`` and ``LatentConcat`` add up,
  ``ImageScale``, ``LatentUpscale``, ``ImageScaleBy``, ``LatentUpscaleBy``,
  ``ImagePadForOutpaint``, ``ImageStitch``, ``ImageGrid``... set or grow the size. Every other
  node of ComfyUI's that handles images (``PASS_THROUGH``: samplers, decoders, crops, filters)
  passes on the largest of its inputs, which bounds what it makes. A size the gateway cannot
  know (an upscale model's factor, a ``0`` that keeps the aspect ratio, an image resized to
  match another) is refused while ``MAX_PIXELS`` applies. A node the operator added to
  ``RAW_WORKFLOW_NODES`` (a custom node) is taken to pass on the largest of its inputs.
* **Limits.** Every such value within ``MAX_BATCH_SIZE`` and ``MAX_PIXELS``; the images that
  ``SaveImage`` nodes return, added up, within ``MAX_BATCH_SIZE``; every input named
  ``steps``, ``width`` x ``height``, ``batch_size`` or ``text`` within its limit.

The run-time counts in the job service back this up: a job that returns more images, or a
larger one, than the limits allow fails all the same. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfygate.errors import ValidationFailed
from comfygate.templates.graph_shapes import Graph, Node, Shape, largest, shape_of
from comfygate.templates.graph_values import Unknown, as_number, order, resolve
from comfygate.templates.limits import CostLimits, is_prompt
from comfygate.templates.raw import is_link

# Nodes whose images the job returns (every other saver is denied in raw workflows).
SAVERS = frozenset({"SaveImage"})


class _GraphCosts:
    def __init__(
        self,
        nodes: dict[str, dict[str, Any]],
        limits: CostLimits,
        image_sizes: Mapping[str, tuple[int, int]],
    ) -> None:
        self.graph = Graph(nodes, image_sizes)
        self.nodes = nodes
        self.limits = limits

    def check(self) -> None:
        limits = self.limits
        returned = 0
        for node_id in order(self.nodes):
            self._check_inputs(node_id)
            shape = shape_of(self.graph, node_id)
            if shape is not None:
                self.graph.shapes[node_id] = shape
                self._check_shape(node_id, shape)
            if self.nodes[node_id]["class_type"] in SAVERS and limits.max_batch_size is not None:
                saver = Node(self.graph, node_id)
                saved = largest(saver.shapes("images"), saver)
                batch = saved.batch if is_link(saver.inputs.get("images")) else 0
                if batch is None:
                    self._refuse(node_id, "MAX_BATCH_SIZE", limits.max_batch_size, saved.why)
                returned += batch or 0
                if returned > limits.max_batch_size:
                    self._refuse(
                        node_id,
                        "MAX_BATCH_SIZE",
                        limits.max_batch_size,
                        f"the workflow would return {returned} images (SaveImage nodes, added up)",
                    )

    def _check_inputs(self, node_id: str) -> None:
        """The by-name limits on every input's resolved value (steps, width x height...)."""
        node = self.nodes[node_id]
        values: dict[str, Any] = {}
        for name, raw in node["inputs"].items():
            value = resolve(self.nodes, raw)
            limit = self._limit_on(name)
            if isinstance(value, Unknown):
                if limit is not None:
                    self._refuse(
                        node_id,
                        limit[0],
                        limit[1],
                        f"input {name!r} comes from node {value.node_id!r} ({value.class_type}), "
                        "whose output cannot be known before the workflow runs: give a value, "
                        "or link a Primitive node",
                        field=f"workflow.{node_id}.inputs.{name}",
                    )
                continue
            if name in ("width", "height", "steps", "batch_size"):
                number = as_number(value)
                value = value if number is None else number
            values[name] = value
        self.limits.check(values, where=f"node {node_id}")

    def _limit_on(self, name: str) -> tuple[str, int] | None:
        limits = self.limits
        pairs: list[tuple[bool, str, int | None]] = [
            (name in ("width", "height"), "MAX_PIXELS", limits.max_pixels),
            (name == "steps", "MAX_STEPS", limits.max_steps),
            (name == "batch_size", "MAX_BATCH_SIZE", limits.max_batch_size),
            (name == "text" or is_prompt(name), "MAX_PROMPT_CHARS", limits.max_prompt_chars),
        ]
        for applies, setting, limit in pairs:
            if applies and limit is not None:
                return setting, limit
        return None

    def _check_shape(self, node_id: str, shape: Shape) -> None:
        limits = self.limits
        if limits.max_batch_size is not None:
            if shape.batch is None:
                self._refuse(node_id, "MAX_BATCH_SIZE", limits.max_batch_size, shape.why)
            elif shape.batch > limits.max_batch_size:
                self._refuse(
                    node_id,
                    "MAX_BATCH_SIZE",
                    limits.max_batch_size,
                    f"it would make a batch of {shape.batch} images",
                )
        if limits.max_pixels is not None:
            pixels = shape.pixels
            if pixels is None:
                self._refuse(node_id, "MAX_PIXELS", limits.max_pixels, shape.why)
            elif pixels > limits.max_pixels:
                size = (
                    f"{shape.width}x{shape.height} images ({pixels} pixels)"
                    if shape.area is None
                    else f"images of up to {pixels} pixels"
                )
                self._refuse(node_id, "MAX_PIXELS", limits.max_pixels, f"it would make {size}")

    def _refuse(
        self, node_id: str, setting: str, limit: int, why: str, *, field: str | None = None
    ) -> None:
        class_type = str(self.nodes[node_id]["class_type"])[:100]
        prefix = f"node {node_id!r} ({class_type}): "
        message = why if why.startswith("node ") else prefix + why
        raise ValidationFailed(
            f"{message} ({setting} is {limit})",
            {"limit": limit, "setting": setting, "node_id": node_id, "node_type": class_type},
            field=field or f"workflow.{node_id}",
        )


def check_graph(
    graph: dict[str, dict[str, Any]],
    limits: CostLimits,
    *,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Refuse a raw workflow (shape already checked) that could cost more than ``limits``
    allow: ValidationFailed naming the node, the input where one is to blame, and the limit.
    ``image_sizes``: (width, height) of the checked LoadImage images, by name."""
    if limits == CostLimits():
        return  # no limit set: nothing to work out
    _GraphCosts(graph, limits, image_sizes or {}).check()
