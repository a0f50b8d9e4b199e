"""Test and benchmark helpers shipped with the package: a fake ComfyUI speaking the real
protocol."""
