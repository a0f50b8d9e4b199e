"""One ComfyUI backend as the pool sees it: its health, load, object_info (and the model
lists read from it) and its status for ``/v1/backends``. The pool (``pool.py``) probes,
routes and fails over between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from comfygate.comfy.client import ComfyClient
from comfygate.comfy.listener import WebsocketListener
from comfygate.comfy.object_info import combo_options, input_spec

# Which node input lists the files of each models folder (used to pick a default model).
MODEL_INPUTS: dict[str, tuple[str, str]] = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "loras": ("LoraLoader", "lora_name"),
    "vae": ("VAELoader", "vae_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
    "diffusion_models": ("UNETLoader", "unet_name"),
    "text_encoders": ("CLIPLoader", "clip_name"),
    "controlnet": ("ControlNetLoader", "control_net_name"),
    "clip_vision": ("CLIPVisionLoader", "clip_name"),
}


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    RECOVERING = "recovering"


def parse_backend(spec: str, index: int) -> tuple[str, str]:
    """``name=url``, or a bare URL named ``backend-<index>``: a name never tells the address
    (it shows on the public /readyz, in metrics and in jobs' errors)."""
    name, sep, url = spec.partition("=")
    if not sep:
        url, name = spec, f"backend-{index}"
    return name.strip(), url.strip().rstrip("/")


@dataclass
class Backend:
    name: str
    url: str
    client: ComfyClient
    health: Health = Health.UNHEALTHY
    last_error: str | None = None
    latency_ms: float | None = None
    queue_remaining: int = 0
    in_flight: int = 0
    failures: int = 0
    successes: int = 0
    last_probe: float = 0.0
    object_info: dict[str, Any] = field(default_factory=dict)
    object_info_at: float = 0.0
    listener: WebsocketListener | None = None
    # The model lists read from ``object_info``, kept until it is replaced (every request
    # asks for them; reading them out of /object_info's answer was most of its validation).
    _choices: tuple[dict[str, Any], dict[str, list[str]]] = field(
        default_factory=lambda: ({}, {}), repr=False
    )

    @property
    def healthy(self) -> bool:
        return self.health is Health.HEALTHY

    @property
    def usable(self) -> bool:
        return self.health is not Health.UNHEALTHY

    @property
    def ws_connected(self) -> bool:
        return self.listener is not None and self.listener.connected

    @property
    def work(self) -> int:
        return max(self.in_flight, self.queue_remaining)

    def capacity(self, max_in_flight: int) -> int:
        limit = {Health.HEALTHY: max_in_flight, Health.RECOVERING: 1}.get(self.health, 0)
        return limit - self.in_flight

    def model_choices(self, folder: str) -> list[str]:
        info, kept = self._choices
        if info is not self.object_info:
            info, kept = self._choices = (self.object_info, {})
        found = kept.get(folder)
        if found is None:
            node, name = MODEL_INPUTS.get(folder, ("", ""))
            # Either combo form (UpscaleModelLoader has the newer): object_info.py reads both.
            options = combo_options(input_spec(info, node, name)) or []
            found = kept[folder] = [str(v) for v in options]
        return found

    def status(self, *, show_url: bool = False) -> dict[str, Any]:
        models = sum(len(self.model_choices(folder)) for folder in MODEL_INPUTS)
        data: dict[str, Any] = {
            "name": self.name,
            "status": self.health.value,
            "websocket": "connected" if self.ws_connected else "disconnected",
            "jobs_in_flight": self.in_flight,
            "queue_length": self.queue_remaining,
            "last_error": self.last_error,
            "latency_ms": self.latency_ms,
            "node_types": len(self.object_info),
            "models": models,
        }
        if show_url:
            data["url"] = self.url
        return data
