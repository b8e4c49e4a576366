"""Completion: an execution is complete when every task it published has finished.

Whichever worker's flush brings ``finished`` up to ``published`` builds the export and then
moves the execution from running to completed with a compare-and-set. The export comes
first so that a worker dying in between leaves a running execution that the next check
completes, never a completed one without its export. Two workers finishing at once may both
build it: the export is a deterministic function of the part files, so both write the same
objects under the same names, and only one of them wins the status change. The winner
enqueues the execution's webhook call, if it names one (``worker/webhooks.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock, SystemClock
from backends.state import StateStore
from worker.export import ExportResult, build_export
from worker.webhooks import enqueue_call

log = logging.getLogger(__name__)


class Completion:
    def __init__(self, state: StateStore, blobs: BlobStore, clock: Clock | None = None) -> None:
        self._state = state
        self._blobs = blobs
        self._clock = clock or SystemClock()
        self._listeners: list[Callable[[str, ExportResult], None]] = []
        self.exports: dict[str, ExportResult] = {}

    def on_complete(self, listener: Callable[[str, ExportResult], None]) -> None:
        self._listeners.append(listener)

    async def check(self, execution_id: str) -> bool:
        """Complete ``execution_id`` if nothing of it is outstanding; True if this call did."""
        progress = await self._state.progress(execution_id)
        if progress.finished < progress.published:
            return False
        execution = await self._state.get_execution(execution_id)
        if execution is None or execution.status != "running":
            return False
        done = msgspec.structs.replace(
            execution, status="completed", finished_at=self._clock.wall()
        )
        result = await build_export(self._blobs, self._state, done)
        if not await self._state.transition(execution_id, "completed", from_statuses={"running"}):
            return False
        await enqueue_call(self._state, self._blobs, done, records=result.records)
        self._announce(execution_id, result)
        return True

    async def finalize(self, execution_id: str) -> ExportResult:
        """Write the export of an execution that has reached a final status."""
        execution = await self._state.get_execution(execution_id)
        assert execution is not None
        result = await build_export(self._blobs, self._state, execution)
        self._announce(execution_id, result)
        return result

    def _announce(self, execution_id: str, result: ExportResult) -> None:
        self.exports[execution_id] = result
        for listener in self._listeners:
            listener(execution_id, result)
