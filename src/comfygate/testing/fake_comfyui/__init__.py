"""In-process fake ComfyUI 0.3.75 server, for fast unit tests and fault injection.

:class:`FakeComfyUI` is an aiohttp application that runs on its own event loop in a background
thread, listens on 127.0.0.1 only, and speaks the HTTP + websocket protocol of a real ComfyUI
0.3.75 server as recorded in ``tests/fixtures/comfyui-samples`` (same status codes, content
types, JSON shapes and websocket message order). It models, in memory:

* the prompt queue (a heap ordered by ``number``; ``front`` prompts get a negative number), a
  single worker that runs prompts one at a time, the history (entries written after
  ``execution_success`` / ``execution_error`` / ``execution_interrupted``, then ``status`` and
  ``executing`` with ``node: null`` are sent);
* prompt validation with the real error / ``node_errors`` shapes (unknown class, missing input,
  min / max, type conversion, combo values, links, return types, no outputs, LoadImage files);
* the "classic" output cache (identical sub-graphs of the previous prompt are reported in
  ``execution_cached`` and not run again; cached output nodes still send ``executed``);
* node execution for EmptyImage, ImageInvert, SaveImage, PreviewImage, LoadImage,
  EmptyLatentImage, CLIPTextEncode, KSampler (one ``progress`` + preview frame per step),
  VAEDecode, VAEEncode, CheckpointLoaderSimple, ImageScale, RepeatLatentBatch and PrimitiveInt,
  producing real PNG files kept in memory and served by ``/view``;
* ``/upload/image`` (duplicate detection, ``name (1).png`` renaming, subfolders, overwrite), the
  ``Origin``/``Host`` check (403), and every route under the ``/api`` prefix too.

Fault injection: ``service_time_s``, ``step_time_s``, ``http_delay_s``, ``ws_enabled``,
:meth:`FakeComfyUI.drop_websockets`, :meth:`FakeComfyUI.fail_next_execution`,
:meth:`FakeComfyUI.hold` / :meth:`FakeComfyUI.release` and :meth:`FakeComfyUI.restart`.

Known differences from the real server: paths in messages use the ``<comfy-base-dir>`` and
``<site-packages>`` placeholders of the recordings, tracebacks are synthetic (same shape), the
``executed`` / ``current_outputs`` lists are in execution / prompt order (the real server uses
set order), a running node's service time can be interrupted at once (the real one only stops at
the next node or sampler step), and images are plain colours / seeded noise.

The modules, from the outside in:

* ``fake``: :class:`FakeComfyUI`, the thread and loop, restart, fault injection, observation;
* ``server``: the running app's lifecycle, websocket sessions, message publisher, prompt worker;
* ``routes``: the HTTP middlewares and routes;
* ``state``: queue items, queue, history (what a restart loses);
* ``validation``: ``POST /prompt`` validation with ComfyUI's error shapes;
* ``execution``: running one prompt (order, cache, messages, failures);
* ``graph``: links, execution order, cache keys;
* ``nodes``: what each node class does, as a table of handlers;
* ``values``: the values passed between nodes (IMAGE, LATENT, ...) and image helpers;
* ``catalogue``: the ``/object_info`` node definitions;
* ``system``: ``/system_stats``, ``/features`` and model folders;
* ``folders``: the in-memory input / output / temp folders and their path rules;
* ``tracebacks``: the synthetic tracebacks and paths of error messages.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401 - only to fail here, with the line below, when it is absent
except ImportError as exc:  # tests/test_packaging.py shows it, in a child process
    raise ImportError(
        "comfygate.testing.fake_comfyui needs aiohttp, which the gateway itself does not: "
        "pip install 'comfygate[testing]'"
    ) from exc

from .catalogue import DEFAULT_CHECKPOINT, NODE_TYPES, node_definitions
from .fake import FakeComfyUI
from .system import COMFYUI_VERSION

# The name tests have imported the /object_info builder under since this was one module.
_node_definitions = node_definitions

__all__ = ["COMFYUI_VERSION", "DEFAULT_CHECKPOINT", "NODE_TYPES", "FakeComfyUI", "node_definitions"]
