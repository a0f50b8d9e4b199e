"""Templates: loading, parameter declarations and binding values into a copy of the graph."""

from comfygate.templates.binding import bind, resolve_params, validate_params
from comfygate.templates.model import RESERVED_KEYS, Parameter, Template
from comfygate.templates.registry import TemplateError, TemplateRegistry

__all__ = [
    "RESERVED_KEYS",
    "Parameter",
    "Template",
    "TemplateError",
    "TemplateRegistry",
    "bind",
    "resolve_params",
    "validate_params",
]
