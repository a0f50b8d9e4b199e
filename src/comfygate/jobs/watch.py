"""Watching: a backend's websocket events, turned into the ledger's transitions.

ComfyUI sends a prompt's events to the client id that submitted it: this process's (its
holder id). ``execution_start`` or a first ``executing`` node: running. ``progress``: the
job's progress (published at once, written at most once a second). ``executed``: the
outputs the job made, and the run-time cost limits (images counted as reported; their size
read from the first bytes). ``execution_success``: collection, from the outputs the
``executed`` messages named. ``executing`` with ``node: null`` (sent after ComfyUI wrote
/history): collection from /history, for every other end (and after a gap in the events).
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from comfygate.backends.backend import Backend
from comfygate.backends.pool import BackendPool
from comfygate.comfy.client import (
    OutputRef,
    execution_error_details,
    parse_history_entry,
)
from comfygate.comfy.events import (
    Event,
    Executed,
    Executing,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
)
from comfygate.errors import ComfyGateError, Conflict, NotFound, StorageFailed
from comfygate.jobs.bus import COLLECT, EventBus
from comfygate.jobs.collect import Collector, returned_refs
from comfygate.jobs.holdings import Held, Holdings
from comfygate.jobs.ledger import Ledger
from comfygate.jobs.model import JobStatus
from comfygate.storage.local import image_size
from comfygate.templates import TemplateRegistry
from comfygate.templates.limits import CostLimits

log = logging.getLogger(__name__)

PROGRESS_PERSIST_INTERVAL_S = 1.0  # a 1,000-step job writes about one row a second, not 1,000


class Watcher:
    def __init__(
        self,
        ledger: Ledger,
        pool: BackendPool,
        holdings: Holdings,
        holder: str,
        collector: Collector,
        templates: TemplateRegistry,
        limits: CostLimits,
        bus: EventBus,
        downloads: ThreadPoolExecutor,
        cancel: Any,
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.holdings = holdings
        self.holder = holder
        self.collector = collector
        self.templates = templates
        self.limits = limits
        self.bus = bus
        self.downloads = downloads
        self.cancel = cancel  # engine.cancel(job_id, error=..., status=...)

    def on_event(self, backend: Backend, event: Event) -> None:
        held = self.holdings.by_prompt(event.prompt_id)
        if held is None:
            return
        match event:
            case ExecutionStart() | Executing(node=str()):
                if not held.running:  # once: every node's "executing" says it again
                    held.running = True
                    self.ledger.running(held.job_id, self.holder)
                    self._prepare_outputs(held.job_id)
            case Progress():
                self._progress(held, {"value": event.value, "max": event.max, "node": event.node})
            case ExecutionError():
                held.exec_error = execution_error_details(
                    {
                        "node_id": event.node_id,
                        "node_type": event.node_type,
                        "exception_type": event.exception_type,
                        "exception_message": event.exception_message,
                    }
                )
            case Executed():
                held.ui_outputs[event.node] = event.output
                self._count_returned(held, event)
            case ExecutionSuccess() if held.ui_outputs and not held.events_gap:
                # Every output node's ``executed`` came before this (one connection, in
                # order; cached nodes send theirs too), and its files are written: collect
                # now, without the /history read and without waiting for ComfyUI to write it.
                # (Nothing reported, or a reconnect on the way: /history decides.)
                held.success = entry = parse_history_entry(
                    event.prompt_id,
                    {
                        "outputs": held.ui_outputs,
                        "status": {"status_str": "success", "completed": True},
                    },
                )
                waiter = self.holdings.waiter(held.job_id)
                if waiter is not None:  # a request here waits for it: it collects it itself
                    waiter.hand((COLLECT, {"entry": entry}))
                else:
                    self._later(self.collector.finalize, held.job_id, entry)
            case Executing(node=None):
                # Sent after ComfyUI wrote /history: the job's end, whatever it was. After a
                # success the events told (handed to a waiter that may be gone), from those
                # again: whoever comes first collects it, the other finds it ended.
                self._later(self.collector.finalize, held.job_id, held.success)

    def _prepare_outputs(self, job_id: str) -> None:
        """The job's output folder, made while ComfyUI runs it, not when its outputs are
        ready (a folder costs 0.1 ms on this machine's disk). A failed job's is deleted with
        its other files."""
        # A storage that fails here fails the save too, with the clear error then.
        with contextlib.suppress(StorageFailed):
            self.collector.outputs.prepare(job_id)

    def _later(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # stopping: reconciliation picks it up
            self.downloads.submit(fn, *args)

    def _progress(self, held: Held, value: dict[str, Any]) -> None:
        self.bus.publish(held.job_id, "progress", value)
        final = value["value"] >= value["max"]
        if final or time.monotonic() - held.progress_written >= PROGRESS_PERSIST_INTERVAL_S:
            held.progress_written = time.monotonic()
            self.ledger.progress(held.job_id, value, self.holder)

    def _count_returned(self, held: Held, event: Executed) -> None:
        """Run-time MAX_BATCH_SIZE: count the images an output node reports; past the limit,
        stop the job. MAX_PIXELS: the size of each reported image, from its first bytes."""
        job = self.ledger.store.get(held.job_id)
        if job is None:
            return
        refs = parse_history_entry(event.prompt_id, {"outputs": {event.node: event.output}})
        returned = returned_refs(self.templates, job, refs.outputs)
        held.returned += len(returned)
        error = self.limits.outputs_error(held.returned)
        backend = self.pool.get(held.backend)
        if error is not None:
            self._later(self._stop_over_limit, held.job_id, error)
        elif returned and backend is not None and self.limits.max_pixels is not None:
            self._later(self._check_pixels, held.job_id, backend, returned)

    def _check_pixels(self, job_id: str, backend: Backend, refs: list[OutputRef]) -> None:
        for ref in refs:
            try:
                with backend.client.view(ref, chunk_size=64 * 1024) as chunks:
                    size = image_size(next(iter(chunks), b""))
            except ComfyGateError:
                return
            error = size and self.limits.pixels_error(ref.node_id, *size)
            if error:
                self._stop_over_limit(job_id, error)
                return

    def _stop_over_limit(self, job_id: str, error: dict[str, Any]) -> None:
        with contextlib.suppress(Conflict, NotFound):
            self.cancel(job_id, error=error, status=JobStatus.FAILED)
