"""The node catalogue: the node classes the fake knows and the ``/object_info`` entries that
describe them (inputs with their types, bounds and combo lists; outputs; output nodes).

The entries are copied from the recording ``02-object_info_selected.json`` of a real ComfyUI
0.3.75, plus three nodes the built-in templates need that the recording lacks. What each node
does when it runs lives in :mod:`.nodes`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

# The one checkpoint of the fake unless FakeComfyUI(checkpoints=...) says otherwise.
DEFAULT_CHECKPOINT = "random-sd15-fp16.safetensors"

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

# A constant that a raw workflow can link into any INT input (copied from a real 0.3.75).
_PRIMITIVE_INT_INFO: dict[str, Any] = {
    "input": {
        "required": {
            "value": [
                "INT",
                {
                    "min": -9223372036854775807,
                    "max": 9223372036854775807,
                    "control_after_generate": True,
                },
            ]
        }
    },
    "input_order": {"required": ["value"]},
    "output": ["INT"],
    "output_is_list": [False],
    "output_name": ["INT"],
    "output_tooltips": [None],
    "name": "PrimitiveInt",
    "display_name": "Int",
    "description": "",
    "python_module": "comfy_extras.nodes_primitive",
    "category": "utils/primitive",
    "output_node": False,
    "deprecated": False,
    "experimental": False,
    "api_node": False,
}

NODE_TYPES: tuple[str, ...] = (
    *_RECORDED_NODE_INFO,
    "VAEEncode",
    "ImageScale",
    "RepeatLatentBatch",
    "PrimitiveInt",
)


def node_definitions(checkpoints: Sequence[str], input_images: Sequence[str]) -> dict[str, Any]:
    """The /object_info answer: recorded entries, with the combo lists of this fake."""
    defs: dict[str, Any] = copy.deepcopy(_RECORDED_NODE_INFO)
    defs["VAEEncode"] = copy.deepcopy(_VAE_ENCODE_INFO)
    defs["ImageScale"] = copy.deepcopy(_IMAGE_SCALE_INFO)
    defs["RepeatLatentBatch"] = copy.deepcopy(_REPEAT_LATENT_BATCH_INFO)
    defs["PrimitiveInt"] = copy.deepcopy(_PRIMITIVE_INT_INFO)
    defs["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = list(checkpoints)
    defs["LoadImage"]["input"]["required"]["image"][0] = sorted(input_images)
    return defs


def input_info(definition: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    """(type, category, options) of input ``name`` of a node definition; category None if the
    node has no such input. The type is a string, or the list of choices of a combo."""
    inputs = definition["input"]
    for category in ("required", "optional", "hidden"):
        if name in inputs.get(category, {}):
            info = inputs[category][name]
            if isinstance(info, str):  # hidden inputs
                return info, category, {}
            extra = info[1] if len(info) > 1 else {}
            return info[0], category, extra
    return None, None, {}
