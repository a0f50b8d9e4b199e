"""Test and benchmark helpers shipped with the package: a fake ComfyUI speaking the real
protocol (``fake_comfyui``; it needs aiohttp: ``pip install 'comfygate[testing]'``)."""
