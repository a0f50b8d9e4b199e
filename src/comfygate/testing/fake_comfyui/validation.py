"""Prompt validation the way ComfyUI 0.3.75 does it (``execution.validate_prompt`` and
``validate_inputs``), with the same error shapes: the top-level ``error`` of a refused
``POST /prompt`` and the ``node_errors`` per node (unknown class, missing input, min / max,
type conversion, combo values, links, return types, no outputs, LoadImage files).

Validation also converts literal inputs in place (``"5"`` becomes ``5`` for an INT), as the
real server does before it queues the prompt.
"""

from __future__ import annotations

from typing import Any

from .catalogue import input_info
from .folders import Folders
from .tracebacks import TB_VALIDATE_INNER, TB_VALIDATE_PROMPT, full_type_name, validation_frame

_ValidationResult = tuple[bool, list[dict[str, Any]], str]

# The literal input types validate_inputs converts values to.
_CONVERTERS: dict[str, type] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def _error(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    """One error in ComfyUI's shape."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _refused(error: dict[str, Any]) -> tuple[bool, dict[str, Any], list[str], dict[str, Any]]:
    """A prompt refused as a whole, before any node is validated."""
    return False, error, [], {}


class _LocatedError(Exception):
    """An exception raised by a given statement of ``validate_inputs`` (for the traceback)."""

    def __init__(self, error: BaseException, code: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.code = code


def _types_compatible(received: Any, wanted: Any) -> bool:
    """ComfyUI's ``validate_node_input`` (non strict)."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    received_set = {t.strip() for t in received.split(",")}
    wanted_set = {t.strip() for t in wanted.split(",")}
    if "*" in received_set or "*" in wanted_set:
        return True
    return len(received_set & wanted_set) > 0


def _value_error(
    name: str, val: Any, input_type: Any, info: list[Any], extra_info: dict[str, Any]
) -> dict[str, Any] | None:
    """The error of a converted literal value: out of bounds, or not one of the choices."""
    if "min" in extra_info and val < extra_info["min"]:
        return _error(
            "value_smaller_than_min",
            f"Value {val} smaller than min of {extra_info['min']}",
            f"{name}",
            input_name=name,
            input_config=info,
            received_value=val,
        )
    if "max" in extra_info and val > extra_info["max"]:
        return _error(
            "value_bigger_than_max",
            f"Value {val} bigger than max of {extra_info['max']}",
            f"{name}",
            input_name=name,
            input_config=info,
            received_value=val,
        )
    if isinstance(input_type, list) and val not in input_type:
        input_config: Any = info
        if len(input_type) > 20:
            list_info = f"(list of length {len(input_type)})"
            input_config = None
        else:
            list_info = str(input_type)
        return _error(
            "value_not_in_list",
            "Value not in list",
            f"{name}: '{val}' not in {list_info}",
            input_name=name,
            input_config=input_config,
            received_value=val,
        )
    return None


class Validator:
    """Validates prompts against the node definitions and input files of the moment."""

    def __init__(self, definitions: dict[str, Any], folders: Folders) -> None:
        self.defs = definitions
        self.folders = folders

    # -- one node ---------------------------------------------------------------------------
    def _link_error(
        self, prompt: dict[str, Any], name: str, link: list[Any], input_type: Any, info: list[Any]
    ) -> dict[str, Any] | None:
        """The error of a link itself (its shape, or the type of the output it points at)."""
        if len(link) != 2:
            return _error(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                f"{name}",
                input_name=name,
                input_config=info,
                received_value=link,
            )
        try:
            o_class_type = prompt[link[0]]["class_type"]
        except Exception as ex:
            raise _LocatedError(ex, "o_class_type = prompt[o_id]['class_type']") from ex
        return_types = tuple(self.defs[o_class_type]["output"])
        try:
            received_type = return_types[link[1]]
        except Exception as ex:
            raise _LocatedError(ex, "received_type = r[val[1]]") from ex
        if _types_compatible(received_type, input_type):
            return None
        return _error(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{name}, received_type({received_type}) mismatch input_type({input_type})",
            input_name=name,
            input_config=info,
            received_type=received_type,
            linked_node=link,
        )

    def _validate_inputs(
        self, prompt: dict[str, Any], unique_id: str, validated: dict[str, _ValidationResult]
    ) -> _ValidationResult:
        if unique_id in validated:
            return validated[unique_id]
        try:
            inputs = prompt[unique_id]["inputs"]
        except Exception as ex:
            raise _LocatedError(ex, "inputs = prompt[unique_id]['inputs']") from ex
        class_type = prompt[unique_id]["class_type"]
        definition = self.defs[class_type]
        input_section = definition["input"]
        valid_inputs = [
            *input_section.get("required", {}),
            *(n for n in input_section.get("optional", {}) if n not in input_section["required"]),
        ]
        # LoadImage has VALIDATE_INPUTS(image): its combo is not checked, the file is.
        validate_function_inputs = ["image"] if class_type == "LoadImage" else []
        errors: list[dict[str, Any]] = []
        valid = True

        for x in valid_inputs:
            input_type, input_category, extra_info = input_info(definition, x)
            if x not in inputs:
                if input_category == "required":
                    errors.append(
                        _error(
                            "required_input_missing",
                            "Required input is missing",
                            f"{x}",
                            input_name=x,
                        )
                    )
                continue

            val = inputs[x]
            info = [input_type, extra_info]
            if isinstance(val, list):
                error = self._link_error(prompt, x, val, input_type, info)
                if error is not None:
                    errors.append(error)
                    continue
                o_id = val[0]
                # Stack depth is behaviour here: the recursion stays in this method and no call
                # made while validating a node goes more than two frames deep, which decides
                # the node that reports the RecursionError of a graph too deep for Python.
                try:
                    if self._validate_inputs(prompt, o_id, validated)[0] is False:
                        valid = False
                except (_LocatedError, RecursionError) as ex:
                    valid = False
                    located = (
                        ex
                        if isinstance(ex, _LocatedError)
                        else _LocatedError(ex, "r = await validate_inputs(...)")
                    )
                    error = _error(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        str(located),
                        input_name=x,
                        input_config=info,
                        exception_message=str(located),
                        exception_type=full_type_name(type(located.error)),
                        traceback=[TB_VALIDATE_INNER, validation_frame(located.code)],
                        linked_node=val,
                    )
                    validated[o_id] = (False, [error], o_id)
                continue

            if isinstance(val, dict) and "__value__" in val:
                val = val["__value__"]
                inputs[x] = val
            convert = _CONVERTERS.get(input_type) if isinstance(input_type, str) else None
            if convert is not None:
                try:
                    val = convert(val)
                except Exception as ex:
                    errors.append(
                        _error(
                            "invalid_input_type",
                            f"Failed to convert an input value to a {input_type} value",
                            f"{x}, {val}, {ex}",
                            input_name=x,
                            input_config=info,
                            received_value=val,
                            exception_message=str(ex),
                        )
                    )
                    continue
                inputs[x] = val

            if x not in validate_function_inputs:
                error = _value_error(x, val, input_type, info, extra_info)
                if error is not None:
                    errors.append(error)

        if class_type == "LoadImage" and "image" in inputs:
            image = inputs["image"]
            if not isinstance(image, str) or self.folders.resolve_annotated(image) is None:
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"image - Invalid image file: {image}",
                        input_name="image",
                    )
                )

        ret: _ValidationResult = (False, errors, unique_id)
        if not errors and valid:
            ret = (True, [], unique_id)
        validated[unique_id] = ret
        return ret

    # -- whole prompt -----------------------------------------------------------------------
    def validate_prompt(
        self, prompt: Any, partial_execution_list: Any
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """(valid, error, output node ids to run, node_errors), like ``validate_prompt``."""
        if not isinstance(prompt, dict):
            if isinstance(prompt, list | str) and len(prompt) == 0:
                prompt = {}
            else:
                # The real server dies with an exception here: HTTP 500, text/plain.
                raise TypeError("prompt is not a JSON object")
        outputs: list[str] = []
        for x in prompt:
            node = prompt[x]
            if not isinstance(node, dict) or "class_type" not in node:
                return _refused(
                    _error(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{x}'",
                    )
                )
            class_type = node["class_type"]
            definition = self.defs.get(class_type)
            if definition is None:
                return _refused(
                    _error(
                        "invalid_prompt",
                        f"Cannot execute because node {class_type} does not exist.",
                        f"Node ID '#{x}'",
                    )
                )
            if definition["output_node"] is True and (
                partial_execution_list is None or x in partial_execution_list
            ):
                outputs.append(x)

        if not outputs:
            return _refused(_error("prompt_no_outputs", "Prompt has no outputs", ""))

        good_outputs: list[str] = []
        errors: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, _ValidationResult] = {}
        for o in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(prompt, o, validated)
            except (_LocatedError, RecursionError) as ex:
                located = ex if isinstance(ex, _LocatedError) else _LocatedError(ex, "")
                valid = False
                reasons = [
                    _error(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(located),
                        exception_type=full_type_name(type(located.error)),
                        traceback=[TB_VALIDATE_PROMPT, validation_frame(located.code)],
                    )
                ]
                validated[o] = (False, reasons, o)
            if valid:
                good_outputs.append(o)
                continue
            errors.append((o, reasons))
            for node_id, result in validated.items():
                # Nodes downstream of a bad node are invalid without reasons: not reported.
                if result[0] is not True and len(result[1]) > 0:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": result[1],
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(o)

        if not good_outputs:
            details = "\n".join(
                f"{error['message']}: {error['details']}"
                for _, reasons in errors
                for error in reasons
            )
            return (
                False,
                _error(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
                ),
                good_outputs,
                node_errors,
            )
        return True, None, good_outputs, node_errors
