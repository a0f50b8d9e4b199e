"""The public handle on the fake: :class:`FakeComfyUI` runs the server on its own event loop
in a background thread, restarts it like a crash would, injects faults, and lets tests observe
the queue, the history and the stored files.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .catalogue import DEFAULT_CHECKPOINT
from .execution import CacheEntry, Failure
from .folders import Folders
from .server import Server
from .state import State


def _abort_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Close every socket transport the loop still has before the loop closes.

    aiohttp gives no handle on a connection accepted during shutdown but never handed to a
    handler, and closing a transport only schedules its socket's close on the loop: either
    way a socket would outlive the fake and surface as a ResourceWarning in some later test.
    Written by hand because asyncio keeps no registry of a loop's transports.
    """
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Transport) and getattr(obj, "_loop", None) is loop:
            with contextlib.suppress(Exception):
                obj.abort()
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))


class FakeComfyUI:
    """A fake ComfyUI 0.3.75 server on 127.0.0.1, running in a background thread.

    Use as a context manager (``with FakeComfyUI() as comfy: ... comfy.url``) or call
    :meth:`start` / :meth:`stop`. Attributes for fault injection can be changed at any time:

    * ``service_time_s``: how long each prompt "runs" (split over the nodes it executes);
    * ``step_time_s``: time per KSampler step (one ``progress`` message per step);
    * ``http_delay_s``: delay before answering any HTTP request (websocket upgrades too);
    * ``ws_enabled``: when False, ``/ws`` answers HTTP 503;
    * ``previews``: send a JPEG preview frame per sampler step, like ``--preview-method auto``;
    * ``caching``: when False, nothing is cached between prompts (like ``--cache-none``), so an
      identical resubmission runs (and spends ``service_time_s``) again.
    """

    def __init__(
        self,
        *,
        service_time_s: float = 0.0,
        step_time_s: float = 0.0,
        port: int = 0,
        checkpoints: list[str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.service_time_s: float = service_time_s
        self.step_time_s: float = step_time_s
        self.http_delay_s: float = 0.0
        self.ws_enabled: bool = True
        self.previews: bool = True
        self.caching: bool = True
        self.checkpoints: list[str] = (
            list(checkpoints) if checkpoints is not None else [DEFAULT_CHECKPOINT]
        )
        self.submissions: list[dict[str, Any]] = []
        self.requests_seen: list[tuple[str, str]] = []  # (method, path) of every HTTP request
        self.port: int = port
        self.url: str = ""
        self._state = State()
        self._folders = Folders(base_dir)  # base_dir: its files on disk too (BACKEND_DIRS)
        self._cache: dict[str, CacheEntry] = {}
        self._held = False
        self._failure: Failure | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._abrupt_stop = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeComfyUI is already running")
        ready = threading.Event()
        failures: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main, args=(ready, failures), name="fake-comfyui", daemon=True
        )
        thread.start()
        ready.wait()
        if failures:
            thread.join()
            raise failures[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Close the websockets and the listening socket, stop the loop and join its thread."""
        self._stop(abrupt=False)

    def _stop(self, *, abrupt: bool) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._abrupt_stop = abrupt
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None
        self._server = None

    def restart(self, *, keep_state: bool = False) -> None:
        """Simulate a crash and restart on the same port.

        Websockets are cut without a close frame (like a dying process) and the port refuses
        connections for a moment. Unless
        ``keep_state``, the queue, the running prompt, the history and the prompt counter are
        lost (like a real restart); with ``keep_state`` they are kept and the prompt that was
        running goes back to the queue. Files in input/output survive, temp files and the
        output cache do not.
        """
        self._stop(abrupt=True)
        if keep_state:
            state = self._state
            for _, item in sorted(state.running.items()):
                heapq.heappush(state.queue, item)
            state.running.clear()
        else:
            self._state = State()
        self._folders.files["temp"].clear()
        self._cache.clear()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event, failures: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server: Server | None = None
        try:
            server = Server(self)
            port = loop.run_until_complete(server.start(self.port))
        except BaseException as ex:
            failures.append(ex)
        else:
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            self._server = server
            self._loop = loop
        ready.set()
        try:
            if not failures:
                loop.run_forever()
        finally:
            if server is not None:
                loop.run_until_complete(server.stop(abrupt=self._abrupt_stop))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            _abort_transports(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def _call(self, func: Callable[[Server], None]) -> None:
        """Run ``func(server)`` on the loop thread (no-op when stopped)."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(func, server)

    def _notify_change(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- fault injection ---------------------------------------------------------------------
    def drop_websockets(self, *, abrupt: bool = False) -> None:
        """Close every open websocket connection (clients are expected to reconnect).

        By default with a close frame (code 1001); ``abrupt=True`` cuts the TCP connections
        instead, as a crash or a network failure would.
        """
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        coro = server.close_websockets(abrupt=abrupt)
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    def fail_next_execution(
        self,
        node_id: str | None = None,
        message: str = "boom",
        exception_type: str = "RuntimeError",
    ) -> None:
        """Make the next prompt that starts fail at run time with ``execution_error``.

        The failing node is ``node_id`` if the prompt executes it, else the prompt's (first)
        output node; it runs even if its result is cached.
        """
        self._failure = Failure(node_id, message, exception_type)

    def hold(self) -> None:
        """Do not start the next prompt until :meth:`release` (queued prompts stay pending)."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self._call(lambda server: server.wake.set())

    # -- observation -------------------------------------------------------------------------
    @property
    def history_count(self) -> int:
        return len(self._state.history)

    @property
    def queue_remaining(self) -> int:
        """Pending plus running prompts (what ``status`` messages report)."""
        return len(self._state.queue) + len(self._state.running)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no prompt is pending or running; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.queue_remaining:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake ComfyUI still busy after {timeout} s")
                self._changed.wait(remaining)

    def file(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes | None:
        """The bytes of a stored file (what ``/view`` would serve), or None."""
        return self._folders.get(folder_type, subfolder, filename)
