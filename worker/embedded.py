"""A whole crawl in one process: the embedded shape behind ``trawl run``.

The same pipeline as a distributed worker, over the memory adapters and a local directory;
the only extra is that this process also starts the execution and stops when it completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from backends.clock import Clock, SystemClock
from backends.fetcher import Fetcher
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.state import Execution, Progress, StateStore
from worker.assemble import Ports, assemble
from worker.context import ExecutionContext
from worker.export import ExportResult
from worker.robots import RobotsCache
from worker.telemetry import Telemetry
from workflows.rules import Admit
from workflows.spec import Workflow

TENANT = "local"
# On a stop (Ctrl-C), pages being fetched get this long to finish and be counted; the ones
# still going are abandoned (not counted, not in the export) so the run ends promptly.
STOP_DRAIN_S = 5.0


@dataclass(slots=True)
class RunResult:
    execution: Execution
    progress: Progress
    export: ExportResult | None
    out_dir: Path


ProgressCallback = Callable[[Progress, float], None]


async def run_embedded(
    workflow: Workflow,
    *,
    out_dir: Path,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    source_text: str = "",
    concurrency: int = 16,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
    telemetry: Telemetry | None = None,
) -> RunResult:
    """Crawl ``workflow`` to completion (or until ``stop``), writing under ``out_dir``."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    telemetry = telemetry or Telemetry.create()
    state = MemoryStateStore()
    ports = Ports(
        queue=MemoryTaskQueue(clock, ack_deadline_s=3600.0),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(clock),
        state=state,
        blobs=LocalBlobStore(out_dir),
    )
    execution = await start_execution(state, workflow, source_text, clock)
    execution_id = execution.id
    parts = assemble(
        ports,
        fetchers=fetchers,
        robots=robots,
        clock=clock,
        concurrency=concurrency,
        worker_id=f"local-{os.getpid()}",
        drain_timeout_s=STOP_DRAIN_S,
        telemetry=telemetry,
    )
    ctx = ExecutionContext.build(execution, workflow)
    parts.contexts.put(ctx)
    completion, frontier, pipeline = parts.completion, parts.frontier, parts.pipeline
    done = asyncio.Event()
    completion.on_complete(lambda _id, _result: done.set())

    starts = [d for d in map(ctx.rules.start, workflow.start_urls) if isinstance(d, Admit)]
    with telemetry.execution_span(execution_id, workflow.name):
        published = await frontier.publish(ctx, starts) if starts else []
    if not published:
        # Nothing to crawl (every start URL out of scope): complete at once, empty export.
        await completion.check(execution_id)

    pipeline_stop = asyncio.Event()
    run_task = asyncio.create_task(pipeline.run(pipeline_stop), name="pipeline")
    started = clock.now()

    async def report() -> None:
        if on_progress is not None:
            on_progress(await state.progress(execution_id), clock.now() - started)

    try:
        await _watch(run_task, done, stop, report, progress_interval_s)
    except Exception as exc:
        # The runtime itself broke (not a page: those are recorded failures). The execution
        # is failed, and what was done is still written out before the error is raised.
        await state.transition(
            execution_id, "failed", from_statuses={"running", "pending"}, error=str(exc)[:500]
        )
        await completion.finalize(execution_id)
        raise
    finally:
        pipeline_stop.set()
        with contextlib.suppress(Exception):
            await run_task
    if not done.is_set():
        # Stopped early (Ctrl-C): what was done is still written out.
        await state.transition(execution_id, "cancelled", from_statuses={"running", "pending"})
        await completion.finalize(execution_id)
    final = await state.get_execution(execution_id)
    assert final is not None
    progress = await state.progress(execution_id)
    await report()
    return RunResult(final, progress, completion.exports.get(execution_id), out_dir)


async def start_execution(
    state: StateStore, workflow: Workflow, source_text: str, clock: Clock
) -> Execution:
    """Store ``workflow`` as a new version and create a running execution of it."""
    spec_json = msgspec.json.encode(workflow).decode()
    version = await state.put_workflow(TENANT, workflow.name, source_text, spec_json)
    execution_id = uuid.uuid4().hex
    await state.create_execution(
        Execution(
            id=execution_id,
            workflow=workflow.name,
            workflow_version=version,
            tenant=TENANT,
            status="pending",
            created_at=clock.wall(),
        )
    )
    await state.transition(execution_id, "running", from_statuses={"pending"})
    execution = await state.get_execution(execution_id)
    assert execution is not None
    return execution


async def _watch(
    run_task: asyncio.Task[None],
    done: asyncio.Event,
    stop: asyncio.Event,
    report: Callable[[], Awaitable[None]],
    interval_s: float,
) -> None:
    """Wait for completion, a stop request or a crashed pipeline, reporting progress."""
    while not done.is_set() and not stop.is_set():
        if run_task.done():
            run_task.result()  # a crashed pipeline raises here
            return
        waiters = [asyncio.create_task(done.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(
            [*waiters, run_task], timeout=interval_s, return_when=asyncio.FIRST_COMPLETED
        )
        for w in waiters:
            w.cancel()
        await report()
