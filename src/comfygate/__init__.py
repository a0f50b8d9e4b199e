"""ComfyGate: a clean, safe, fast HTTP API gateway for ComfyUI workflows."""

__version__ = "0.1.0"
