"""ComfyGate: a clean, safe, fast HTTP API gateway for ComfyUI workflows.

``comfygate.Client`` (and the SDK's job, event and error types) are exported lazily: the SDK
pulls in ``requests``, and neither the gateway nor ``import comfygate`` should pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from comfygate.sdk import (
        BackendUnavailableError,
        BadRequestError,
        Client,
        ClientTimeoutError,
        ComfyGateAPIError,
        ComfyGateConnectionError,
        ComfyGateError,
        ConflictError,
        Event,
        GatewayTimeoutError,
        GenerationFailedError,
        Job,
        JobError,
        MultipleOutputsError,
        NotFoundError,
        Output,
        PayloadTooLargeError,
        Progress,
        RateLimitedError,
        UnauthorizedError,
        ValidationError,
    )

__all__ = [
    "BackendUnavailableError",
    "BadRequestError",
    "Client",
    "ClientTimeoutError",
    "ComfyGateAPIError",
    "ComfyGateConnectionError",
    "ComfyGateError",
    "ConflictError",
    "Event",
    "GatewayTimeoutError",
    "GenerationFailedError",
    "Job",
    "JobError",
    "MultipleOutputsError",
    "NotFoundError",
    "Output",
    "PayloadTooLargeError",
    "Progress",
    "RateLimitedError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
]
_SDK_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from comfygate import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'comfygate' has no attribute {name!r}")
