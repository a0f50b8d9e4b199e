"""Per-family rules: a pass's sampling values, the sizes of images, video and audio, the
model loaders, input images, and what the outputs are.

A later pass (a refiner: another model; a hires fix: the same model on an upscaled latent)
writes the first pass's parameter where its value is the same (``steps`` of an SDXL base and
refiner) and gets a parameter of its own, named ``refiner_...`` or ``hires_...``, where it is
not. The seed is one for the whole job: every pass that adds noise takes it.
"""

from __future__ import annotations

from comfygate.templates.infer.graph import LATENT_INPUTS, SAMPLERS, Graph, Pass
from comfygate.templates.infer.params import (
    NAME_MAX_LENGTH,
    Fallback,
    Params,
    Tie,
    builtin_choices,
)
from comfygate.templates.model import SEED_MAX

IMAGE_DESCRIPTION = (
    "An input image: a multipart file, a base64 data: URI or an https URL (PNG, JPEG or WebP)."
)
_SAMPLING: tuple[tuple[str, Fallback, str], ...] = (
    ("steps", Fallback("integer", 1, 150), "Sampling steps."),
    ("cfg", Fallback("number", 0.0, 30.0), "Classifier-free guidance scale."),
    ("sampler", Fallback("string", enum=builtin_choices("sampler")), "Sampler."),
    ("scheduler", Fallback("string", enum=builtin_choices("scheduler")), "Noise schedule."),
    (
        "denoise",
        Fallback("number", 0.0, 1.0),
        "How much of the latent is replaced by noise (1: all of it).",
    ),
)
SEED_DESCRIPTION = "Noise seed; the same seed and parameters give the same image."

# Size inputs of latent, conditioning and image-scaling nodes: input -> (parameter, text).
_SIZES: dict[str, tuple[str, Fallback, str]] = {
    "width": ("width", Fallback("integer", 64, 2048), "Width in pixels."),
    "height": ("height", Fallback("integer", 64, 2048), "Height in pixels."),
    "length": ("length", Fallback("integer", 1, 1024), "Video length in frames."),
    "video_frames": ("length", Fallback("integer", 1, 1024), "Video length in frames."),
    "seconds": ("seconds", Fallback("number", 1.0, 600.0), "Audio length in seconds."),
    "batch_size": ("batch_size", Fallback("integer", 1, 8), "Images per job."),
    "scale_by": ("scale", Fallback("number", 0.01, 8.0), "Upscale factor."),
}
# Values elsewhere that the workflow ties to a size by holding the same number.
_SIZE_ECHOES: dict[str, tuple[tuple[str, str], ...]] = {
    "seconds": (("ConditioningStableAudio", "seconds_total"),),
    "fps": (("LTXVConditioning", "frame_rate"),),
    "width": (("ModelSamplingFlux", "width"),),
    "height": (("ModelSamplingFlux", "height"),),
}
# Output nodes with a frame rate.
_FPS_INPUTS: tuple[tuple[str, str], ...] = (
    ("CreateVideo", "fps"),
    ("SaveAnimatedWEBP", "fps"),
    ("SaveAnimatedPNG", "fps"),
    ("SaveWEBM", "fps"),
    ("VHS_VideoCombine", "frame_rate"),
)

# Loaders: class -> ((input, parameter, models folder), ...).
LOADERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoint", "checkpoints"),),
    "CheckpointLoader": (("ckpt_name", "checkpoint", "checkpoints"),),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoint", "checkpoints"),),
    "unCLIPCheckpointLoader": (("ckpt_name", "checkpoint", "checkpoints"),),
    "UNETLoader": (("unet_name", "unet", "diffusion_models"),),
    "CLIPLoader": (("clip_name", "clip", "text_encoders"),),
    "DualCLIPLoader": (
        ("clip_name1", "clip", "text_encoders"),
        ("clip_name2", "clip", "text_encoders"),
    ),
    "TripleCLIPLoader": tuple((f"clip_name{i}", "clip", "text_encoders") for i in (1, 2, 3)),
    "VAELoader": (("vae_name", "vae", "vae"),),
    "ControlNetLoader": (("control_net_name", "controlnet", "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", "controlnet", "controlnet"),),
    "UpscaleModelLoader": (("model_name", "upscale_model", "upscale_models"),),
    "CLIPVisionLoader": (("clip_name", "clip_vision", "clip_vision"),),
}
_LORAS = {
    "LoraLoader": (("strength_model", "lora_strength"), ("strength_clip", "lora_clip_strength")),
    "LoraLoaderModelOnly": (("strength_model", "lora_strength"),),
}
_STRENGTH = Fallback("number", -100.0, 100.0)
_CONTROLNET_APPLY = ("ControlNetApply", "ControlNetApplyAdvanced", "ControlNetApplySD3")


def pass_prefix(graph: Graph, passes: list[Pass], index: int) -> str:
    """'' for a first pass; 'refiner_' for a later one on another model, 'hires_' for one
    on the same model (a second pass over the upscaled result)."""
    p = passes[index]
    earlier = [q for q in passes[:index] if graph.reaches(p.latent, q.node_id, LATENT_INPUTS)]
    if not earlier:
        return ""
    same = graph.model_root(p.model) == graph.model_root(earlier[-1].model)
    return "hires_" if same else "refiner_"


def sampling(graph: Graph, params: Params, p: Pass, prefix: str) -> None:
    where = p.values.get("seed")
    if where is not None:
        params.param(
            "seed",
            *where,
            Fallback("integer", 0, SEED_MAX),
            SEED_DESCRIPTION,
            tie="always",
            seed=True,
        )
    for role, fallback, text in _SAMPLING:
        if role in p.values:
            _shared(params, role, prefix, p.values[role], fallback, text)
    start = p.values.get("start_at_step")
    if prefix and start is not None:
        value = graph.inputs(start[0]).get(start[1])
        for earlier in params.pass_ends:
            if (
                isinstance(value, int)
                and value > 0
                and value == graph.inputs(earlier[0]).get(earlier[1])
            ):
                text = f"The step at which the {prefix.rstrip('_')} pass takes over."
                name = params.param(
                    f"{prefix}start_step", *earlier, Fallback("integer", 0, 10000), text
                )
                if name is not None:
                    params.target(name, *start)
    end = p.values.get("end_at_step")
    if not prefix and end is not None:
        params.pass_ends.append(end)


def _shared(
    params: Params, role: str, prefix: str, where: tuple[str, str], fallback: Fallback, text: str
) -> None:
    """The first pass's parameter when the value is the same, else one of this pass."""
    found = params.literal(*where)
    if found is None:
        params.param(role, *where, fallback, text)  # for the note
        return
    if prefix and role in params.params and params.same(role, found[1]):
        params.param(role, *where, fallback, text, tie="equal")
    else:
        params.param(prefix + role, *where, fallback, text, tie="equal")


def sizes(graph: Graph, params: Params, p: Pass, prefix: str) -> None:
    """The size node a pass's latent comes from: the first upstream that holds a width,
    length, seconds...; for a later pass only one between it and the pass before."""
    for node_id, _ in graph.upstream([p.latent], LATENT_INPUTS):
        if graph.nodes[node_id]["class_type"] in SAMPLERS:
            return
        if size_node(graph, params, node_id, prefix):
            return


def size_node(
    graph: Graph, params: Params, node_id: str, prefix: str = "", tie: Tie = "equal"
) -> bool:
    inputs = graph.inputs(node_id)
    held = [name for name in _SIZES if name in inputs and params.literal(node_id, name)]
    if not held or (not prefix and held == ["scale_by"]):
        return False
    for input_name in held:
        base, fallback, text = _SIZES[input_name]
        if not prefix and base == "scale":
            continue
        params.param(prefix + base, node_id, input_name, fallback, text, tie=tie, quiet=True)
    return True


def echoes(graph: Graph, params: Params) -> None:
    """Inputs elsewhere that hold the same value as a size or fps parameter join it."""
    for base, places in _SIZE_ECHOES.items():
        if base not in params.params:
            continue
        for class_type, input_name in places:
            for node_id in graph.of_class(class_type):
                found = params.literal(node_id, input_name)
                if found and params.same(base, found[1]):
                    params.target(base, *found[0])


def frame_rates(graph: Graph, params: Params) -> None:
    for class_type, input_name in _FPS_INPUTS:
        for node_id in graph.of_class(class_type):
            text = "Frames per second of the video."
            params.param(
                "fps",
                node_id,
                input_name,
                Fallback("number", 1.0, 120.0),
                text,
                tie="equal",
                quiet=True,
            )


def loaders(graph: Graph, params: Params, roles: dict[str, str]) -> None:
    """Every loader's file a model choice; ``roles`` names the loaders of a later pass's
    model (``refiner_checkpoint``)."""
    for node_id in graph.ids():
        class_type = graph.nodes[node_id]["class_type"]
        for input_name, base, folder in LOADERS.get(class_type, ()):
            model(params, roles.get(node_id, "") + base, node_id, input_name, folder)
        if class_type in _LORAS:
            name = model(params, "lora", node_id, "lora_name", "loras")
            suffix = name[len("lora") :] if name else ""
            for input_name, base in _LORAS[class_type]:
                text = "How strongly the LoRA applies."
                params.param(base + suffix, node_id, input_name, _STRENGTH, text, quiet=True)
        if class_type in _CONTROLNET_APPLY:
            text = "How strongly the ControlNet applies."
            params.param(
                "controlnet_strength",
                node_id,
                "strength",
                Fallback("number", 0.0, 10.0),
                text,
                quiet=True,
            )


def model(params: Params, base: str, node_id: str, input_name: str, folder: str) -> str | None:
    name = params.param(
        base,
        node_id,
        input_name,
        Fallback("string", max_length=NAME_MAX_LENGTH),
        f"Model file name in the models folder '{folder}'.",
        choices=False,
        model_folder=folder,
    )
    if name is not None:
        choices = params.choices(node_id, input_name)
        value = params.params[name].get("default")
        if choices is not None and value not in choices:
            params.notes.append(f"{name!r}: the workflow's model {value!r} is not on this ComfyUI")
    return name


def images(graph: Graph, params: Params) -> None:
    """LoadImage's file as an ``image`` parameter, the shape of the built-in img2img's:
    required, with no default (it would name a file on one ComfyUI: the registry refuses
    it). The gateway binds the name of the image it checked and uploaded."""
    for node_id in graph.of_class("LoadImage"):
        label = f"node {node_id} (LoadImage) input 'image'"
        inputs = graph.inputs(node_id)
        if "image" not in inputs or isinstance(inputs["image"], list):
            why = "is missing" if "image" not in inputs else "comes from another node"
            params.notes.append(f"{label} {why}: no 'image' parameter")
            continue
        param = {
            "type": "image",
            "required": True,
            "description": IMAGE_DESCRIPTION,
            "targets": [f"{node_id}.image"],
        }
        params.add("image", param)


def outputs(graph: Graph, params: Params) -> None:
    classes = {graph.nodes[i]["class_type"] for i in graph.ids()}
    savers = [i for i in graph.ids() if "filename_prefix" in graph.inputs(i)]
    if "PreviewImage" in classes and not savers:
        params.notes.append(
            "the images come from PreviewImage only: use SaveImage, or set "
            '"include_temp_outputs": true in the template, or the jobs return no image'
        )
