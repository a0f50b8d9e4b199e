"""Raw workflows (POST /v1/workflows/run): which graphs the gateway lets through, and why.

A raw workflow is a ComfyUI API-format graph sent as is. ComfyUI runs whatever a graph says
and has no notion of users, so the gateway checks every node before anything is sent:

* the shape: an object of at most ``MAX_NODES`` nodes, ids of up to 64 safe characters,
  each node ``{"class_type": str, "inputs": object}`` (``_meta`` is dropped), every link
  ``[node_id, output_index]`` naming a node of the graph;
* the node type, against an allowlist (``RAW_WORKFLOW_NODES``; by default
  ``DEFAULT_ALLOWED``, below: the node types of ComfyUI 0.3.75 as the setup installs it,
  minus ``DENIED``);
* ``LoadImage``: only images the gateway checked and named (``cg-<sha256>.<ext>``); the API
  turns a data: URI or https URL in its ``image`` input into such a name first;
* every ``filename_prefix`` is replaced with the job's own (``binding.apply_output_prefix``),
  so no output lands outside the job's files, and the cost limits (``MAX_PIXELS``,
  ``MAX_STEPS``...) hold for inputs of those names.

Why these are denied (``DENIED``): ComfyUI resolves file names itself, and an "annotated"
name such as ``x.png [output]`` reaches the output folder, where every other job's results
are. So:

* nodes that **read files by name** (LoadImageMask, LoadImageOutput, LoadLatent, LoadVideo,
  Load3D, Preview3D, WebcamCapture, the dataset folder loaders) could read other users'
  inputs and outputs, or anything ComfyUI can see;
* nodes that **write files** other than SaveImage/PreviewImage (model, checkpoint, LoRA,
  latent, dataset, video, 3D, SVG, animated image savers; LossGraphNode) write where the
  gateway neither returns nor deletes, some into the models folders every later job loads;
* **network** nodes: every node of ``comfy_api_nodes`` (paid third-party APIs: data leaves
  the network; none is in the list);
* **code-like or unbounded** nodes: training (TrainLoraNode, LoraModelLoader: hours of GPU
  and files written), TorchCompileModel (compiles and caches code), the regular-expression
  string nodes (a hostile pattern stalls the backend's CPU).

Custom nodes installed on a backend are not in the default list: an operator who wants one
names it in ``RAW_WORKFLOW_NODES`` (``default`` in that list keeps the built-in ones). Pure
functions; the API resolves images, the job service runs the graph.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from comfygate.errors import ValidationFailed

MAX_NODES = 500
RAW_TEMPLATE = "workflow"  # the `template` of a raw workflow's job
# Used with fullmatch: "^...$" would also take a trailing newline ("1\n").
_NODE_ID = re.compile(r"[A-Za-z0-9_:.-]{1,64}")
GATEWAY_IMAGE_NAME = re.compile(r"cg-[0-9a-f]{32}\.(?:png|jpg|webp)")
IMAGE_NODE = "LoadImage"
IMAGE_INPUT = "image"

DENIED: dict[str, str] = {
    **dict.fromkeys(
        [
            "LoadImageMask",
            "LoadImageOutput",
            "LoadLatent",
            "LoadVideo",
            "Load3D",
            "Preview3D",
            "WebcamCapture",
            "LoadImageDataSetFromFolder",
            "LoadImageTextDataSetFromFolder",
            "LoadTrainingDataset",
        ],
        "reads files by name",
    ),
    **dict.fromkeys(
        [
            "SaveLatent",
            "CheckpointSave",
            "CLIPSave",
            "VAESave",
            "ModelSave",
            "LoraSave",
            "ImageOnlyCheckpointSave",
            "SaveLoRA",
            "SaveImageDataSetToFolder",
            "SaveImageTextDataSetToFolder",
            "SaveTrainingDataset",
            "SaveGLB",
            "SaveSVGNode",
            "SaveVideo",
            "SaveWEBM",
            "SaveAnimatedPNG",
            "SaveAnimatedWEBP",
            "LossGraphNode",
        ],
        "writes files the gateway does not manage",
    ),
    **dict.fromkeys(
        ["TrainLoraNode", "LoraModelLoader", "TorchCompileModel"],
        "trains or compiles (unbounded work, files written)",
    ),
    **dict.fromkeys(
        ["RegexExtract", "RegexMatch", "RegexReplace"],
        "runs a caller's regular expression on the backend",
    ),
}

# ComfyUI 0.3.75's node types (core nodes and comfy_extras, as the setup installs it), minus
# DENIED and every comfy_api_nodes node (they call third-party services).
DEFAULT_ALLOWED: frozenset[str] = frozenset(
    {
        "APG",
        "AddNoise",
        "AddTextPrefix",
        "AddTextSuffix",
        "AdjustBrightness",
        "AdjustContrast",
        "AlignYourStepsScheduler",
        "BasicGuider",
        "BasicScheduler",
        "BetaSamplingScheduler",
        "CFGGuider",
        "CFGNorm",
        "CFGZeroStar",
        "CLIPAttentionMultiply",
        "CLIPLoader",
        "CLIPMergeAdd",
        "CLIPMergeSimple",
        "CLIPMergeSubtract",
        "CLIPSetLastLayer",
        "CLIPTextEncode",
        "CLIPTextEncodeControlnet",
        "CLIPTextEncodeFlux",
        "CLIPTextEncodeHiDream",
        "CLIPTextEncodeHunyuanDiT",
        "CLIPTextEncodeLumina2",
        "CLIPTextEncodePixArtAlpha",
        "CLIPTextEncodeSD3",
        "CLIPTextEncodeSDXL",
        "CLIPTextEncodeSDXLRefiner",
        "CLIPVisionEncode",
        "CLIPVisionLoader",
        "Canny",
        "CaseConverter",
        "CenterCropImages",
        "CheckpointLoader",
        "CheckpointLoaderSimple",
        "ChromaRadianceOptions",
        "CombineHooks2",
        "CombineHooks4",
        "CombineHooks8",
        "ConditioningAverage",
        "ConditioningCombine",
        "ConditioningConcat",
        "ConditioningSetArea",
        "ConditioningSetAreaPercentage",
        "ConditioningSetAreaPercentageVideo",
        "ConditioningSetAreaStrength",
        "ConditioningSetDefaultCombine",
        "ConditioningSetMask",
        "ConditioningSetProperties",
        "ConditioningSetPropertiesAndCombine",
        "ConditioningSetTimestepRange",
        "ConditioningTimestepsRange",
        "ConditioningZeroOut",
        "ContextWindowsManual",
        "ControlNetApply",
        "ControlNetApplyAdvanced",
        "ControlNetApplySD3",
        "ControlNetInpaintingAliMamaApply",
        "ControlNetLoader",
        "CosmosImageToVideoLatent",
        "CosmosPredict2ImageToVideoLatent",
        "CreateHookKeyframe",
        "CreateHookKeyframesFromFloats",
        "CreateHookKeyframesInterpolated",
        "CreateHookLora",
        "CreateHookLoraModelOnly",
        "CreateHookModelAsLora",
        "CreateHookModelAsLoraModelOnly",
        "CreateVideo",
        "CropMask",
        "DiffControlNetLoader",
        "DifferentialDiffusion",
        "DiffusersLoader",
        "DisableNoise",
        "DualCFGGuider",
        "DualCLIPLoader",
        "EasyCache",
        "EmptyAceStepLatentAudio",
        "EmptyChromaRadianceLatentImage",
        "EmptyCosmosLatentVideo",
        "EmptyFlux2LatentImage",
        "EmptyHunyuanImageLatent",
        "EmptyHunyuanLatentVideo",
        "EmptyHunyuanVideo15Latent",
        "EmptyImage",
        "EmptyLTXVLatentVideo",
        "EmptyLatentHunyuan3Dv2",
        "EmptyLatentImage",
        "EmptyMochiLatentVideo",
        "EmptySD3LatentImage",
        "Epsilon Scaling",
        "ExponentialScheduler",
        "ExtendIntermediateSigmas",
        "FeatherMask",
        "FlipSigmas",
        "Flux2Scheduler",
        "FluxDisableGuidance",
        "FluxGuidance",
        "FluxKontextImageScale",
        "FluxKontextMultiReferenceLatentMethod",
        "FreSca",
        "FreeU",
        "FreeU_V2",
        "GITSScheduler",
        "GLIGENLoader",
        "GLIGENTextBoxApply",
        "GetImageSize",
        "GetVideoComponents",
        "GrowMask",
        "Hunyuan3Dv2Conditioning",
        "Hunyuan3Dv2ConditioningMultiView",
        "HunyuanImageToVideo",
        "HunyuanRefinerLatent",
        "HunyuanVideo15ImageToVideo",
        "HunyuanVideo15LatentUpscaleWithModel",
        "HunyuanVideo15SuperResolution",
        "HyperTile",
        "HypernetworkLoader",
        "ImageAddNoise",
        "ImageBatch",
        "ImageBlend",
        "ImageBlur",
        "ImageColorToMask",
        "ImageCompositeMasked",
        "ImageCrop",
        "ImageDeduplication",
        "ImageFlip",
        "ImageFromBatch",
        "ImageGrid",
        "ImageInvert",
        "ImageOnlyCheckpointLoader",
        "ImagePadForOutpaint",
        "ImageQuantize",
        "ImageRGBToYUV",
        "ImageRotate",
        "ImageScale",
        "ImageScaleBy",
        "ImageScaleToMaxDimension",
        "ImageScaleToTotalPixels",
        "ImageSharpen",
        "ImageStitch",
        "ImageToMask",
        "ImageUpscaleWithModel",
        "ImageYUVToRGB",
        "InpaintModelConditioning",
        "InstructPixToPixConditioning",
        "InvertMask",
        "JoinImageWithAlpha",
        "KSampler",
        "KSamplerAdvanced",
        "KSamplerSelect",
        "KarrasScheduler",
        "LTXVAddGuide",
        "LTXVConditioning",
        "LTXVCropGuides",
        "LTXVImgToVideo",
        "LTXVPreprocess",
        "LTXVScheduler",
        "LaplaceScheduler",
        "LatentAdd",
        "LatentApplyOperation",
        "LatentApplyOperationCFG",
        "LatentBatch",
        "LatentBatchSeedBehavior",
        "LatentBlend",
        "LatentComposite",
        "LatentCompositeMasked",
        "LatentConcat",
        "LatentCrop",
        "LatentCut",
        "LatentFlip",
        "LatentFromBatch",
        "LatentInterpolate",
        "LatentMultiply",
        "LatentOperationSharpen",
        "LatentOperationTonemapReinhard",
        "LatentRotate",
        "LatentSubtract",
        "LatentUpscale",
        "LatentUpscaleBy",
        "LatentUpscaleModelLoader",
        "LazyCache",
        "LoadImage",
        "LoraLoader",
        "LoraLoaderModelOnly",
        "LotusConditioning",
        "Mahiro",
        "MakeTrainingDataset",
        "MaskComposite",
        "MaskPreview",
        "MaskToImage",
        "MergeImageLists",
        "MergeTextLists",
        "ModelComputeDtype",
        "ModelMergeAdd",
        "ModelMergeAuraflow",
        "ModelMergeBlocks",
        "ModelMergeCosmos14B",
        "ModelMergeCosmos7B",
        "ModelMergeCosmosPredict2_14B",
        "ModelMergeCosmosPredict2_2B",
        "ModelMergeFlux1",
        "ModelMergeLTXV",
        "ModelMergeMochiPreview",
        "ModelMergeQwenImage",
        "ModelMergeSD1",
        "ModelMergeSD2",
        "ModelMergeSD35_Large",
        "ModelMergeSD3_2B",
        "ModelMergeSDXL",
        "ModelMergeSimple",
        "ModelMergeSubtract",
        "ModelMergeWAN2_1",
        "ModelPatchLoader",
        "ModelSamplingAuraFlow",
        "ModelSamplingContinuousEDM",
        "ModelSamplingContinuousV",
        "ModelSamplingDiscrete",
        "ModelSamplingFlux",
        "ModelSamplingLTXV",
        "ModelSamplingSD3",
        "ModelSamplingStableCascade",
        "Morphology",
        "NormalizeImages",
        "OptimalStepsScheduler",
        "PairConditioningCombine",
        "PairConditioningSetDefaultCombine",
        "PairConditioningSetProperties",
        "PairConditioningSetPropertiesAndCombine",
        "PatchModelAddDownscale",
        "PerpNeg",
        "PerpNegGuider",
        "PerturbedAttentionGuidance",
        "PhotoMakerEncode",
        "PhotoMakerLoader",
        "PolyexponentialScheduler",
        "PorterDuffImageComposite",
        "PreviewAny",
        "PreviewImage",
        "PrimitiveBoolean",
        "PrimitiveFloat",
        "PrimitiveInt",
        "PrimitiveString",
        "PrimitiveStringMultiline",
        "QuadrupleCLIPLoader",
        "QwenImageDiffsynthControlnet",
        "RandomCropImages",
        "RandomNoise",
        "RebatchImages",
        "RebatchLatents",
        "ReferenceLatent",
        "RenormCFG",
        "RepeatImageBatch",
        "RepeatLatentBatch",
        "ReplaceText",
        "RescaleCFG",
        "ResizeAndPadImage",
        "ResizeImagesByLongerEdge",
        "ResizeImagesByShorterEdge",
        "SDTurboScheduler",
        "SD_4XUpscale_Conditioning",
        "SV3D_Conditioning",
        "SVD_img2vid_Conditioning",
        "SamplerCustom",
        "SamplerCustomAdvanced",
        "SamplerDPMAdaptative",
        "SamplerDPMPP_2M_SDE",
        "SamplerDPMPP_2S_Ancestral",
        "SamplerDPMPP_3M_SDE",
        "SamplerDPMPP_SDE",
        "SamplerER_SDE",
        "SamplerEulerAncestral",
        "SamplerEulerAncestralCFGPP",
        "SamplerEulerCFGpp",
        "SamplerLCMUpscale",
        "SamplerLMS",
        "SamplerSASolver",
        "SamplingPercentToSigma",
        "SaveImage",
        "ScaleROPE",
        "SelfAttentionGuidance",
        "SetClipHooks",
        "SetFirstSigma",
        "SetHookKeyframes",
        "SetLatentNoiseMask",
        "SetUnionControlNetType",
        "ShuffleDataset",
        "ShuffleImageTextDataset",
        "SkipLayerGuidanceDiT",
        "SkipLayerGuidanceDiTSimple",
        "SkipLayerGuidanceSD3",
        "SolidMask",
        "SplitImageWithAlpha",
        "SplitSigmas",
        "SplitSigmasDenoise",
        "StableCascade_EmptyLatentImage",
        "StableCascade_StageB_Conditioning",
        "StableCascade_StageC_VAEEncode",
        "StableCascade_SuperResolutionControlnet",
        "StableZero123_Conditioning",
        "StableZero123_Conditioning_Batched",
        "StringCompare",
        "StringConcatenate",
        "StringContains",
        "StringLength",
        "StringReplace",
        "StringSubstring",
        "StringTrim",
        "StripWhitespace",
        "StyleModelApply",
        "StyleModelLoader",
        "T5TokenizerOptions",
        "TCFG",
        "TemporalScoreRescaling",
        "TextEncodeAceStepAudio",
        "TextEncodeHunyuanVideo_ImageToVideo",
        "TextEncodeQwenImageEdit",
        "TextEncodeQwenImageEditPlus",
        "TextToLowercase",
        "TextToUppercase",
        "ThresholdMask",
        "TomePatchModel",
        "TrimVideoLatent",
        "TripleCLIPLoader",
        "TruncateText",
        "UNETLoader",
        "UNetCrossAttentionMultiply",
        "UNetSelfAttentionMultiply",
        "UNetTemporalAttentionMultiply",
        "USOStyleReference",
        "UpscaleModelLoader",
        "VAEDecode",
        "VAEDecodeHunyuan3D",
        "VAEDecodeTiled",
        "VAEEncode",
        "VAEEncodeForInpaint",
        "VAEEncodeTiled",
        "VAELoader",
        "VPScheduler",
        "VideoLinearCFGGuidance",
        "VideoTriangleCFGGuidance",
        "VoxelToMesh",
        "VoxelToMeshBasic",
        "Wan22FunControlToVideo",
        "Wan22ImageToVideoLatent",
        "WanAnimateToVideo",
        "WanCameraEmbedding",
        "WanCameraImageToVideo",
        "WanContextWindowsManual",
        "WanFirstLastFrameToVideo",
        "WanFunControlToVideo",
        "WanFunInpaintToVideo",
        "WanHuMoImageToVideo",
        "WanImageToVideo",
        "WanPhantomSubjectToVideo",
        "WanSoundImageToVideo",
        "WanSoundImageToVideoExtend",
        "WanTrackToVideo",
        "WanVaceToVideo",
        "unCLIPCheckpointLoader",
        "unCLIPConditioning",
        "wanBlockSwap",
    }
)


def allowed_nodes(setting: list[str]) -> frozenset[str]:
    """The allowlist from RAW_WORKFLOW_NODES: empty means the default; ``default`` in the
    list includes it."""
    if not setting:
        return DEFAULT_ALLOWED
    names = {n for n in setting if n != "default"}
    return frozenset(names | (DEFAULT_ALLOWED if "default" in setting else set()))


def check_shape(workflow: Any) -> dict[str, dict[str, Any]]:
    """A clean copy of the graph: the checked structure, ``_meta`` dropped."""
    if not isinstance(workflow, dict) or not workflow:
        raise ValidationFailed("'workflow' must be a non-empty object of nodes", field="workflow")
    if len(workflow) > MAX_NODES:
        raise ValidationFailed(
            f"'workflow' has {len(workflow)} nodes (limit {MAX_NODES})", field="workflow"
        )
    graph: dict[str, dict[str, Any]] = {}
    for node_id, node in workflow.items():
        where = f"workflow.{str(node_id)[:64]}"
        if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
            raise ValidationFailed(
                f"node id {str(node_id)[:64]!r} must be 1 to 64 letters, digits or _:.-",
                field=where,
            )
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
            or set(node) - {"class_type", "inputs", "_meta"}
        ):
            raise ValidationFailed(
                f"node {node_id!r} must be {{'class_type': str, 'inputs': object}} "
                "(ComfyUI's API format: 'Save (API format)')",
                field=where,
            )
        graph[node_id] = {
            "class_type": node["class_type"],
            "inputs": copy.deepcopy(node["inputs"]),
        }
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            if is_link(value) and value[0] not in graph:
                raise ValidationFailed(
                    f"node {node_id!r} input {name!r} links to node {value[0]!r}, "
                    "which the workflow does not have",
                    field=f"workflow.{node_id}.inputs.{name}",
                )
    return graph


def is_link(value: Any) -> bool:
    """A link in an API-format graph: ``[source node id, output index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def check_nodes(graph: dict[str, dict[str, Any]], allowed: frozenset[str]) -> None:
    """Every node type on the allowlist."""
    for node_id, node in graph.items():
        class_type = node["class_type"]
        if class_type not in allowed:
            why = DENIED.get(class_type, "not on the gateway's allowlist (RAW_WORKFLOW_NODES)")
            raise ValidationFailed(
                f"node {node_id!r}: {class_type[:100]!r} is not allowed in raw workflows: {why}",
                {"node_id": node_id, "node_type": class_type[:100]},
                field=f"workflow.{node_id}.class_type",
            )


def check_images(graph: dict[str, dict[str, Any]], names: set[str]) -> None:
    """Every LoadImage loads one of ``names``: images the gateway checked and named."""
    for node_id, value in image_inputs(graph):
        if (
            not isinstance(value, str)
            or not GATEWAY_IMAGE_NAME.fullmatch(value)
            or value not in names
        ):
            raise ValidationFailed(
                f"node {node_id!r} (LoadImage): 'image' must be a data: URI or an https URL "
                "of the image",
                field=f"workflow.{node_id}.inputs.image",
            )


def image_inputs(graph: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    """(node id, value) of every LoadImage ``image`` input, for the API to resolve."""
    return [
        (node_id, node["inputs"].get(IMAGE_INPUT))
        for node_id, node in graph.items()
        if node["class_type"] == IMAGE_NODE
    ]
