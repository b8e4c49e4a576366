"""What ``trawl status`` and ``trawl export`` read: an execution's counts and its export."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

from backends.blobs import BlobNotFound
from backends.errors import InvalidInputError
from backends.state import Execution, Progress
from trawl.settings import Settings
from worker.completion import Completion
from worker.export_read import csv_chunks, lines
from worker.paths import export_path

FINAL = ("completed", "cancelled", "failed")


def report(execution: Execution, progress: Progress) -> dict[str, Any]:
    """The status of an execution as the command prints it (and as JSON)."""
    return {
        "execution_id": execution.id,
        "workflow": execution.workflow,
        "workflow_version": execution.workflow_version,
        "status": execution.status,
        "error": execution.error,
        "pages": progress.pages(),
        "records": progress.records,
        "by_phase": progress.by_phase,
        "by_marker": progress.by_marker,
        "failures_by_class": progress.failures_by_class,
        "warnings": progress.warnings,
    }


async def status(
    settings: Settings, execution_id: str, *, wait: bool = False, timeout_s: float = 0
) -> dict[str, Any] | None:
    """The execution's report; with ``wait``, once it has finished (or ``timeout_s``)."""
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
                done = execution.status in FINAL
                if done or not wait or (deadline is not None and time.monotonic() > deadline):
                    return report(execution, progress)
                if execution.status == "running" and progress.complete:
                    # Every task finished but nobody completed it (its last worker died
                    # between the two): complete it now, export included.
                    await Completion(state, blobs).check(execution_id)
                    continue
                await asyncio.sleep(1.0)
        finally:
            await blobs.close()


async def export_lines(settings: Settings, execution_id: str, fmt: str, out: TextIO) -> int:
    """Write the export of a finished execution to ``out`` as JSONL or CSV; the count."""
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
        path = export_path("", execution_id)
        count = 0
        if fmt == "csv":
            async for text, rows in csv_chunks(blobs, path):
                out.write(text)
                count += rows
            return count
        async for line in lines(blobs, path):
            out.write(line.decode("utf-8") + "\n")
            count += 1
        return count
    except BlobNotFound:
        raise InvalidInputError(f"execution {execution_id} has no export") from None
    finally:
        await blobs.close()
