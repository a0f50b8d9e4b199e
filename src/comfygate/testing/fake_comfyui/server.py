"""The running server, on the fake's event loop: the aiohttp app's lifecycle, the websocket
sessions and the publisher that sends them messages, and the worker that runs queued prompts
one at a time and writes their history entries.

The HTTP routes are in :mod:`.routes`; the thread and loop the server runs on belong to
:class:`.fake.FakeComfyUI`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .catalogue import node_definitions
from .execution import Interrupted, PromptRun
from .routes import make_app
from .state import MAXIMUM_HISTORY_SIZE, QueueItem, State
from .system import server_features

if TYPE_CHECKING:
    from .fake import FakeComfyUI


class _Client:
    """One websocket session."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.feature_flags: dict[str, Any] = {}


class Server:
    def __init__(self, fake: FakeComfyUI) -> None:
        self.fake = fake
        self.sockets: dict[str, _Client] = {}
        # Every open websocket, including ones replaced by a reconnect with the same clientId
        # (they get no more messages but stay open): all must be closed at stop.
        self.open_clients: set[_Client] = set()
        self.outbox: asyncio.Queue[tuple[str | bytes, str | None]] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.interrupt = asyncio.Event()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.runner: web.AppRunner | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0

    @property
    def state(self) -> State:
        return self.fake._state

    def definitions(self) -> dict[str, Any]:
        """The node definitions of the moment (checkpoints and input images change)."""
        return node_definitions(self.fake.checkpoints, self.fake._folders.input_images())

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, port: int) -> int:
        self.runner = web.AppRunner(make_app(self), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        self.tasks = [
            asyncio.create_task(self._publisher(), name="fake-comfyui-publisher"),
            asyncio.create_task(self._worker(), name="fake-comfyui-worker"),
        ]
        return self.port

    async def stop(self, *, abrupt: bool = False) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []
        await self.close_websockets(abrupt=abrupt)
        if self.runner is not None:
            server = self.runner.server
            await self.runner.cleanup()
            self.runner = None
            # Connections still open after the graceful shutdown (a request mid-flight) would
            # outlive the loop and surface as ResourceWarnings in whatever test runs next.
            for conn in list(server.connections) if server is not None else []:
                conn.force_close()
                if conn.transport is not None:
                    conn.transport.abort()
            for _ in range(3):  # let the transports' connection_lost callbacks run
                await asyncio.sleep(0)

    async def close_websockets(self, *, abrupt: bool = False) -> None:
        """Close every websocket: with a close frame (1001), or by cutting the TCP connection."""
        clients = list(self.open_clients | set(self.sockets.values()))
        self.sockets.clear()
        self.open_clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                transport = client.request.transport
                if abrupt and transport is not None:
                    transport.abort()
                else:
                    await client.ws.close(code=1001, message=b"Server shutting down")

    # -- websocket sessions ------------------------------------------------------------------
    async def websocket_handler(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: a session that gets the messages of its ``clientId`` and broadcasts."""
        if not self.fake.ws_enabled:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)  # reusing a session: the old socket gets nothing more
        else:
            sid = uuid.uuid4().hex
        client = _Client(ws, request)
        self.sockets[sid] = client
        self.open_clients.add(client)
        try:
            await ws.send_str(
                json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": sid}})
            )
            if self.client_id == sid and self.last_node_id is not None:
                await ws.send_str(
                    json.dumps({"type": "executing", "data": {"node": self.last_node_id}})
                )
            first_message = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    data = json.loads(msg.data)
                    if first_message and data.get("type") == "feature_flags":
                        client.feature_flags = dict(data.get("data", {}))
                        await ws.send_str(
                            json.dumps({"type": "feature_flags", "data": server_features()})
                        )
                first_message = False
        finally:
            self.open_clients.discard(client)
            if self.sockets.get(sid) is client:
                del self.sockets[sid]
        return ws

    def send(self, event: str, data: Any, sid: str | None) -> None:
        """Queue a JSON message for session ``sid`` (None: every session)."""
        self.outbox.put_nowait((json.dumps({"type": event, "data": data}), sid))

    def send_bytes(self, payload: bytes, sid: str | None) -> None:
        self.outbox.put_nowait((payload, sid))

    async def _publisher(self) -> None:
        while True:
            payload, sid = await self.outbox.get()
            if sid is None:
                targets = list(self.sockets.values())
            else:
                client = self.sockets.get(sid)
                targets = [client] if client is not None else []
            for target in targets:
                with contextlib.suppress(Exception):
                    if isinstance(payload, bytes):
                        await target.ws.send_bytes(payload)
                    else:
                        await target.ws.send_str(payload)

    def supports_preview_metadata(self, sid: str | None) -> bool:
        client = self.sockets.get(sid) if sid is not None else None
        return client is not None and client.feature_flags.get("supports_preview_metadata") is True

    # -- queue and worker --------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any]:
        remaining = len(self.state.queue) + len(self.state.running)
        return {"exec_info": {"queue_remaining": remaining}}

    def queue_updated(self) -> None:
        self.send("status", {"status": self.queue_info()}, None)
        self.fake._notify_change()

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self.state.queue, item)
        self.queue_updated()
        self.wake.set()

    def check_interrupt(self) -> None:
        if self.interrupt.is_set():
            self.interrupt.clear()
            raise Interrupted("Processing interrupted")

    async def busy(self, seconds: float) -> None:
        """Spend ``seconds`` "computing"; an interrupt ends it at once."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.interrupt.wait()
        else:
            await asyncio.sleep(0)
        self.check_interrupt()

    async def _worker(self) -> None:
        while True:
            while self.fake._held or not self.state.queue:
                self.wake.clear()
                await self.wake.wait()
            state = self.state
            item = heapq.heappop(state.queue)
            task_id = state.task_counter
            state.task_counter += 1
            state.running[task_id] = item
            self.queue_updated()
            failure, self.fake._failure = self.fake._failure, None
            run = PromptRun(self, item, failure)
            try:
                history_result = await run.run()
            except Exception as ex:  # a bug of the fake: report it like a node failure
                run.success = False
                run.add_message(
                    "execution_error",
                    {"prompt_id": item.prompt_id, "exception_message": f"{ex}\n"},
                    broadcast=False,
                )
                history_result = {"outputs": {}, "meta": {}}
            state.running.pop(task_id, None)
            if len(state.history) > MAXIMUM_HISTORY_SIZE:
                state.history.pop(next(iter(state.history)))
            entry: dict[str, Any] = {
                "prompt": item.as_list(),
                "outputs": {},
                "status": {
                    "status_str": "success" if run.success else "error",
                    "completed": run.success,
                    "messages": run.messages,
                },
            }
            entry.update(history_result)
            state.history[item.prompt_id] = entry
            self.queue_updated()
            if run.client_id is not None:
                self.send("executing", {"node": None, "prompt_id": item.prompt_id}, run.client_id)
