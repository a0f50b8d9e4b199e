"""Build an SD 1.5 checkpoint with random weights from ComfyUI's own model classes.

Real SD 1.5 weights cannot be downloaded here (no network but package registries), yet the
classic txt2img graph must run for real in tests and on a newcomer's first day. The UNet,
CLIP-L text encoder and VAE are built with the exact SD 1.5 configurations ComfyUI detects,
initialised with PyTorch's default initialisers, and saved in fp16 under the original
checkpoint key names, so CheckpointLoaderSimple loads it as SD15. The image is noise; every
node, tensor shape and code path is the real one.

Runs inside the ComfyUI virtual environment (comfy/install.py runs it by path; never imported by
the gateway): python build_random_sd15.py --comfyui DIR --out FILE
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source directory (has main.py)")
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, args.comfyui)
    # ComfyUI reads its command line at import: make it CPU-only before anything touches CUDA.
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch
    from safetensors.torch import save_file

    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.sd1_clip import SDClipModel

    torch.manual_seed(args.seed)
    unet_config = {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4,
        "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
        "dtype": torch.float32, "in_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
        "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }
    vae_config = {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
        "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
        "dropout": 0.0,
    }
    parts = {
        "model.diffusion_model.": UNetModel(
            **unet_config, device="cpu", operations=comfy.ops.disable_weight_init
        ),
        "cond_stage_model.": SDClipModel(device="cpu", dtype=torch.float32),
        "first_stage_model.": AutoencoderKL(ddconfig=vae_config, embed_dim=4),
    }
    # ComfyUI's layers skip initialisation (weights are normally loaded); run PyTorch's own.
    initialisable = (
        torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
        torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding,
    )
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for prefix, module in parts.items():
            for sub in module.modules():
                for cls in initialisable:
                    if isinstance(sub, cls):
                        cls.reset_parameters(sub)  # type: ignore[arg-type]
                        break
            for key, tensor in module.state_dict().items():
                if key.endswith("position_ids"):
                    state[prefix + key] = tensor.clone()
                else:
                    state[prefix + key] = tensor.to(torch.float16).contiguous().clone()
    tmp = args.out + ".part"
    save_file(state, tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(state)} tensors, {os.path.getsize(args.out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
