"""What ``trawl status``, ``trawl cancel``, ``trawl reconcile`` and ``trawl export`` read and
do: an execution's counts, its health, its cancel and its export."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, BinaryIO

from backends.blobs import BlobNotFound, BlobStore
from backends.clock import SystemClock
from backends.errors import InvalidInputError
from backends.state import Execution, Progress, StateStore
from trawl.settings import Settings
from worker.completion import Completion
from worker.export_read import write_export
from worker.reconcile import CANCEL_SETTLE_S, LEASE_TTL_S, reconcile, settle_cancel
from worker.report import OK, ExecutionReport, Health
from worker.stall import health_of

FINAL = ("completed", "cancelled", "failed")
POLL_S = 1.0


def report(
    execution: Execution, progress: Progress, health: Health = OK, *, settled: bool = True
) -> dict[str, Any]:
    """The status of an execution as the command prints it (and as JSON): the status view
    of its report (worker/report.py). ``settled``: a cancelled execution's counters are
    frozen and its export written."""
    return ExecutionReport.of(execution, progress, health=health, settled=settled).status_view()


async def status(
    settings: Settings, execution_id: str, *, wait: bool = False, timeout_s: float = 0
) -> dict[str, Any] | None:
    """The execution's report; with ``wait``, once it has finished (a cancelled one: once its
    export is written) or ``timeout_s`` has passed (then ``settled`` or the status says it
    has not finished)."""
    from trawl.distributed import make_blobs, open_state

    async with open_state(settings) as state:
        blobs = make_blobs(settings)
        try:
            deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
            while True:
                execution = await state.get_execution(execution_id)
                if execution is None:
                    return None
                progress = await state.progress(execution_id)
                settled = await _settled(state, blobs, execution)
                done = execution.status in FINAL and settled
                if done or not wait or (deadline is not None and time.monotonic() > deadline):
                    health = await health_of(
                        state, execution, progress, now=_now(), stall_after_s=settings.stall_after_s
                    )
                    return report(execution, progress, health, settled=settled)
                if execution.status == "running" and progress.complete:
                    # Every task finished but nobody completed it (its last worker died
                    # between the two): complete it now, export included.
                    await Completion(state, blobs).check(execution_id)
                    continue
                await asyncio.sleep(POLL_S)
        finally:
            await blobs.close()


async def _settled(state: StateStore, blobs: BlobStore, execution: Execution) -> bool:
    if execution.status != "cancelled":
        return True
    return await settle_cancel(state, blobs, execution.id, now=_now())


async def cancel(
    settings: Settings, execution_id: str, *, timeout_s: float
) -> tuple[Execution | None, dict[str, Any] | None]:
    """Cancel a pending or running execution, then wait (up to ``timeout_s``) until no worker
    writes for it any more and its export is written. The execution as it was (None: there
    is none) and, if this call cancelled it, its report (else None)."""
    from trawl.distributed import open_state

    async with open_state(settings) as state:
        execution = await state.get_execution(execution_id)
        if execution is None:
            return None, None
        moved = await state.transition(
            execution_id, "cancelled", from_statuses={"pending", "running"}
        )
        if not moved:
            return await state.get_execution(execution_id) or execution, None
    return execution, await status(settings, execution_id, wait=True, timeout_s=timeout_s)


CANCEL_TIMEOUT_S = CANCEL_SETTLE_S + LEASE_TTL_S + 10.0


async def reconcile_now(
    settings: Settings, execution_id: str, *, after_s: float
) -> tuple[Execution | None, int]:
    """Publish again the unfinished tasks of a running execution that no worker holds and
    that were registered more than ``after_s`` ago. The execution (None: there is none) and
    how many were published (0 unless it is running)."""
    from trawl.distributed import make_queue, open_state

    async with open_state(settings) as state:
        execution = await state.get_execution(execution_id)
        if execution is None or execution.status != "running":
            return execution, 0
        queue = make_queue(settings)
        try:
            count = await reconcile(state, queue, execution_id, after_s=after_s, now=_now())
        finally:
            await queue.close()
    return execution, count


async def export_lines(
    settings: Settings, execution_id: str, fmt: str, out: BinaryIO, phase: str | None = None
) -> int:
    """Write the export of a finished execution (of ``phase``, or all) to ``out`` as JSONL,
    CSV or Parquet; the count."""
    from trawl.distributed import make_blobs, open_state

    async with open_state(settings) as state:
        execution = await state.get_execution(execution_id)
    if execution is None:
        raise InvalidInputError(f"no execution {execution_id}")
    if execution.status not in FINAL:
        raise InvalidInputError(
            f"execution {execution_id} is {execution.status}: its export is written when it "
            "finishes (trawl status --wait)"
        )
    blobs = make_blobs(settings)
    try:
        return await write_export(blobs, execution_id, fmt, out, phase)
    except BlobNotFound:
        raise InvalidInputError(f"execution {execution_id} has no export") from None
    finally:
        await blobs.close()


def _now() -> datetime:
    return SystemClock().wall()
