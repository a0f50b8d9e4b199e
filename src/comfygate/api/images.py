"""Image parameters of a request: from a multipart file, a ``data:`` URI or an https URL to a
checked image with a gateway-made name, before anything reaches ComfyUI.

Each image is checked by ``inputs.images.check_image`` (PNG, JPEG or WebP identified from the
bytes, one still frame, fully decoded once, at most ``MAX_IMAGE_MB`` and ``MAX_IMAGE_PIXELS``,
and ``MAX_PIXELS`` when set). URLs are fetched by ``inputs.fetch.fetch_url``: https only
(http too with ``ALLOW_HTTP_IMAGE_URLS``), public addresses only, connected to the address
that was checked. The parameter's value becomes the image's gateway-made name
(``cg-<sha256>.<ext>``); the client's file name and content type are never used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import current_app
from werkzeug.datastructures import FileStorage

from comfygate.api import engine
from comfygate.api.body import Body, RunRequest, run_request, template_name, type_form
from comfygate.errors import ValidationFailed
from comfygate.inputs.fetch import FetchPolicy, Resolver, fetch_url
from comfygate.inputs.images import CheckedImage, check_image, decode_data_uri
from comfygate.templates import Template

# Tests put a fake DNS resolver here (``app.extensions[RESOLVER] = ...``).
RESOLVER = "comfygate.resolver"


def resolve_images(
    template: Template, params: dict[str, Any], files: dict[str, FileStorage]
) -> tuple[dict[str, Any], dict[str, CheckedImage]]:
    """(params with each image parameter's value replaced by its image's name, the images)."""
    settings = engine.settings()
    max_bytes = int(settings.max_image_mb * 1024 * 1024)
    max_pixels = settings.max_image_pixels
    if settings.max_pixels is not None:
        max_pixels = min(max_pixels, settings.max_pixels)
    image_params = {n for n, p in template.parameters.items() if p.type == "image"}
    for name in files:
        if name not in image_params:
            raise ValidationFailed(
                f"file field '{name}' is not an image parameter of template '{template.name}'",
                field=name,
            )
    params = dict(params)
    images: dict[str, CheckedImage] = {}
    for name in sorted(image_params):
        if name in files:
            data = _read_upload(files[name], name, max_bytes)
        elif name in params:
            data = image_bytes(params[name], name, max_bytes)
        else:
            continue
        checked = check_image(data, field=name, max_bytes=max_bytes, max_pixels=max_pixels)
        params[name] = checked.filename()
        images[name] = checked
    return params, images


def _read_upload(upload: FileStorage, field: str, max_bytes: int) -> bytes:
    data = upload.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValidationFailed(
            f"'{field}' is over the limit of {max_bytes} bytes", {"limit": max_bytes}, field=field
        )
    return data


def image_bytes(value: Any, field: str, max_bytes: int) -> bytes:
    """The bytes a JSON image value names: a data: URI's, or an http(s) URL's body."""
    if not isinstance(value, str):
        raise ValidationFailed(
            f"'{field}' must be a data: URI or an https URL (or a multipart file)", field=field
        )
    if value[:5].lower() == "data:":
        return decode_data_uri(value, field=field, max_bytes=max_bytes)
    if value[:8].lower() == "https://" or value[:7].lower() == "http://":
        settings = engine.settings()
        policy = FetchPolicy(
            allow_http=settings.allow_http_image_urls,
            max_bytes=max_bytes,
            timeout_s=settings.image_fetch_timeout_s,
        )
        resolver: Resolver | None = current_app.extensions.get(RESOLVER)
        return fetch_url(value, field=field, policy=policy, resolver=resolver)
    raise ValidationFailed(
        f"'{field}' must be a data: URI or an https URL (or a multipart file)", field=field
    )


def run_request_with_images(body: Body) -> tuple[RunRequest, dict[str, CheckedImage]]:
    """The run a body asks for, its form fields typed and its images checked and named."""
    template = engine.templates().get(template_name(body.data))
    req = run_request(type_form(template, body))
    params, images = resolve_images(template, req.params, body.files)
    return dataclasses.replace(req, params=params), images
