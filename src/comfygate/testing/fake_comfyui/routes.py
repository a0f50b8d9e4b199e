"""The HTTP side of the fake: the aiohttp app with ComfyUI's middlewares (the ``Origin`` /
``Host`` check that answers 403, aiohttp's plain 500 for an unhandled exception) and every
route, each under the ``/api`` prefix too: system and model info, ``/object_info``, the queue,
the history, ``POST /prompt``, ``/interrupt``, ``/free``, ``/view`` and ``/upload/image``.

The websocket route's handler belongs to :class:`.server.Server`, with the sessions it keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import io
import ipaddress
import json
import logging
import mimetypes
import posixpath
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image

from .execution import now_ms
from .folders import annotated_filepath, norm_subfolder, split_relative
from .state import QueueItem
from .system import MAX_UPLOAD_SIZE, MODEL_FOLDERS, server_features, system_stats
from .validation import Validator
from .values import png_bytes

if TYPE_CHECKING:
    from .server import Server

_log = logging.getLogger(__name__)

# extra_data keys of POST /prompt that are kept out of /queue and /history.
_SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
# Content types /view never serves as such (ComfyUI answers application/octet-stream instead).
_UNSAFE_CONTENT_TYPES = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}


def _is_loopback(host: str | None) -> bool:
    """ComfyUI's ``is_loopback``, without DNS look-ups for names other than localhost."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _as_object(json_data: Any) -> dict[str, Any]:
    """A JSON body that is not an object behaves like ``{}`` (membership tests fail)."""
    return json_data if isinstance(json_data, dict) else {}


def make_app(server: Server) -> web.Application:
    """The aiohttp application of ``server``."""
    fake = server.fake

    @web.middleware
    async def delay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        fake.requests_seen.append((request.method, request.path))  # for tests to look at
        if fake.http_delay_s > 0:
            await asyncio.sleep(fake.http_delay_s)
        return await handler(request)

    @web.middleware
    async def origin_only_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # ComfyUI's create_origin_only_middleware: Host and Origin must match (loopback).
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain: str | None = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain: str | None = parsed.netloc.lower()
            host_parsed = urllib.parse.urlsplit("//" + (host_domain or ""))
            loopback = _is_loopback(host_parsed.hostname)
            with contextlib.suppress(ValueError):
                if parsed.port is None:
                    host_domain = host_parsed.hostname
                if host_parsed.port is None:
                    origin_domain = parsed.hostname
            if loopback and host_domain and origin_domain and host_domain != origin_domain:
                return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # What aiohttp answers for an unhandled exception (outside its debug mode), which is
        # how the real server fails on e.g. a body that is not JSON.
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            _log.exception("Error handling request %s %s", request.method, request.path)
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )

    app = web.Application(
        client_max_size=MAX_UPLOAD_SIZE,
        middlewares=[delay_middleware, origin_only_middleware, error_middleware],
    )
    routes = _Routes(server)
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/ws", server.websocket_handler),
        ("GET", "/system_stats", routes.get_system_stats),
        ("GET", "/features", routes.get_features),
        ("GET", "/models", routes.get_model_folders),
        ("GET", "/models/{folder}", routes.get_models),
        ("GET", "/embeddings", routes.get_embeddings),
        ("GET", "/object_info", routes.get_object_info),
        ("GET", "/object_info/{node_class}", routes.get_object_info_node),
        ("GET", "/queue", routes.get_queue),
        ("POST", "/queue", routes.post_queue),
        ("GET", "/history", routes.get_history),
        ("GET", "/history/{prompt_id}", routes.get_history_prompt_id),
        ("POST", "/history", routes.post_history),
        ("GET", "/prompt", routes.get_prompt),
        ("POST", "/prompt", routes.post_prompt),
        ("POST", "/interrupt", routes.post_interrupt),
        ("POST", "/free", routes.post_free),
        ("GET", "/view", routes.view_image),
        ("POST", "/upload/image", routes.upload_image),
    ]
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    return app


class _Routes:
    """The HTTP handlers; state lives on the server and its fake."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.fake = server.fake

    # -- simple GETs -------------------------------------------------------------------------
    async def get_system_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(system_stats(self.server.port))

    async def get_features(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(server_features())

    async def get_model_folders(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(MODEL_FOLDERS)

    async def get_models(self, request: web.Request) -> web.StreamResponse:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(list(self.fake.checkpoints) if folder == "checkpoints" else [])

    async def get_embeddings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    async def get_object_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.server.definitions())

    async def get_object_info_node(self, request: web.Request) -> web.StreamResponse:
        node_class = request.match_info["node_class"]
        defs = self.server.definitions()
        return web.json_response({node_class: defs[node_class]} if node_class in defs else {})

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.server.queue_info())

    # -- queue -------------------------------------------------------------------------------
    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        state = self.server.state
        return web.json_response(
            {
                "queue_running": [item.as_list() for item in state.running.values()],
                "queue_pending": [item.as_list() for item in state.queue],
            }
        )

    def _wipe_queue(self) -> None:
        self.server.state.queue = []
        self.server.queue_updated()

    def _delete_queue_item(self, prompt_id: Any) -> None:
        queue = self.server.state.queue
        for x in range(len(queue)):
            if queue[x].prompt_id == prompt_id:
                if len(queue) == 1:
                    self._wipe_queue()
                else:
                    queue.pop(x)
                    heapq.heapify(queue)
                self.server.queue_updated()
                return

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        if json_data.get("clear"):
            self._wipe_queue()
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                self._delete_queue_item(id_to_delete)
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.StreamResponse:
        try:
            json_data = _as_object(await request.json())
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        server = self.server
        if prompt_id:
            if any(item.prompt_id == prompt_id for item in server.state.running.values()):
                server.interrupt.set()
        else:
            server.interrupt.set()
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        json_data.get("unload_models", False)
        json_data.get("free_memory", False)
        return web.Response(status=200)

    # -- history -----------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        history = self.server.state.history
        if offset < 0 and max_items is not None:
            offset = len(history) - max_items
        out: dict[str, Any] = {}
        for i, key in enumerate(history):
            if i >= offset:
                out[key] = history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def get_history_prompt_id(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        history = self.server.state.history
        if prompt_id in history:
            return web.json_response({prompt_id: history[prompt_id]})
        return web.json_response({})

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        state = self.server.state
        if json_data.get("clear"):
            state.history = {}
        if "delete" in json_data:
            for id_to_delete in json_data["delete"]:
                state.history.pop(id_to_delete, None)
        self.fake._notify_change()
        return web.Response(status=200)

    # -- prompt ------------------------------------------------------------------------------
    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        json_data = _as_object(await request.json())
        original = copy.deepcopy(json_data)
        state = self.server.state
        number: int | float
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = state.number
            if json_data.get("front"):
                number = -number
            state.number += 1

        if "prompt" not in json_data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        validator = Validator(self.server.definitions(), self.fake._folders)
        valid, error_info, good_outputs, node_errors = validator.validate_prompt(
            prompt, json_data.get("partial_execution_targets")
        )
        extra_data: Any = {}
        if "extra_data" in json_data:
            extra_data = json_data["extra_data"]
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid:
            return web.json_response({"error": error_info, "node_errors": node_errors}, status=400)

        sensitive = {k: extra_data.pop(k) for k in _SENSITIVE_EXTRA_DATA_KEYS if k in extra_data}
        extra_data["create_time"] = now_ms()
        item = QueueItem(number, prompt_id, prompt, extra_data, good_outputs, sensitive)
        self.server.put(item)
        submission = dict(original)
        submission["prompt_id"] = prompt_id
        submission.setdefault("client_id", None)
        self.fake.submissions.append(submission)
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    # -- files -------------------------------------------------------------------------------
    async def view_image(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, folder = annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if folder is None:
            folder = query.get("type", "output")
        if folder not in self.fake._folders.files:
            return web.Response(status=400)
        subfolder = ""
        if "subfolder" in query:
            normalized = norm_subfolder(query["subfolder"])
            if normalized is None:
                return web.Response(status=403)
            subfolder = normalized
        filename = posixpath.basename(filename)
        data = self.fake._folders.get(folder, subfolder, filename)
        if data is None:
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        channel = query.get("channel", "rgba")
        if "preview" in query:
            preview_info = query["preview"].split(";")
            image_format = preview_info[0]
            if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                image_format = "webp"
            quality = int(preview_info[-1]) if preview_info[-1].isdigit() else 90
            with Image.open(io.BytesIO(data)) as img:
                converted = (
                    img.convert("RGB") if image_format == "jpeg" or channel == "rgb" else img
                )
                buffer = io.BytesIO()
                converted.save(buffer, format=image_format, quality=quality)
            return web.Response(
                body=buffer.getvalue(), content_type=f"image/{image_format}", headers=disposition
            )
        if channel == "rgb":
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGBA") if img.mode == "RGBA" else img.convert("RGB")
                if rgb.mode == "RGBA":
                    r, g, b, _ = rgb.split()
                    rgb = Image.merge("RGB", (r, g, b))
                body = png_bytes(rgb)
            return web.Response(body=body, content_type="image/png", headers=disposition)
        if channel == "a":
            with Image.open(io.BytesIO(data)) as img:
                alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                alpha_img = Image.new("RGBA", alpha.size)
                alpha_img.putalpha(alpha)
                body = png_bytes(alpha_img)
            return web.Response(body=body, content_type="image/png", headers=disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in _UNSAFE_CONTENT_TYPES:
            content_type = "application/octet-stream"
        return web.Response(body=data, headers={**disposition, "Content-Type": content_type})

    async def upload_image(self, request: web.Request) -> web.StreamResponse:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        upload_type = post.get("type")
        folder = "input" if upload_type is None else str(upload_type)
        if folder not in self.fake._folders.files:
            raise ValueError(f"unknown upload type {folder!r}")  # the real server: HTTP 500
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):
            raise AttributeError("'str' object has no attribute 'file'")  # HTTP 500 as well
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        normalized = norm_subfolder(subfolder)
        target = split_relative(posixpath.join(normalized or "", filename))
        if normalized is None or target is None:
            return web.Response(status=400)
        directory, name = target
        content = image.file.read()
        folders = self.fake._folders
        if overwrite not in ("true", "1"):
            stem, ext = posixpath.splitext(name)
            i = 1
            while (existing := folders.get(folder, directory, name)) is not None:
                if existing == content:
                    break
                name = f"{stem} ({i}){ext}"
                filename = name
                i += 1
        folders.put(folder, directory, name, content)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": folder})
