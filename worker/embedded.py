"""A whole crawl in one process: the embedded shape behind ``trawl run``.

The same pipeline as a distributed worker, over the embedded adapters and a local directory;
the only extra is that this process also starts the execution and stops when it completes.
The adapters are the memory ones journaled to a SQLite file per execution
(``backends.sqlite``), so a run that was interrupted can be resumed where it stopped.
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
from backends.errors import InvalidInputError
from backends.fetcher import Fetcher
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.queue import TaskQueue
from backends.ratelimit import RateLimiter, RatePolicy
from backends.seen import SeenSet
from backends.sqlite import RunStore, StoreBusy, find_runs, open_run, state_file
from backends.state import Execution, ExecutionStatus, Progress, StateStore
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
# Nothing else runs these tasks: a delivery is only redelivered when handed back.
ACK_DEADLINE_S = 3600.0


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
    persist: bool = True,
    resume: bool = False,
    limiter: RateLimiter | None = None,
    host_policy: RatePolicy | None = None,
) -> RunResult:
    """Crawl ``workflow`` to completion (or until ``stop``), writing under ``out_dir``.

    With ``persist`` the execution's state (seen set, queued tasks, counters) is kept in
    ``<out_dir>/<execution>/state.db`` as the crawl goes; ``resume`` continues the newest
    unfinished execution in ``out_dir`` from that file (ResumeError if there is none, or if
    it ran a different workflow). ``limiter`` (default: this run's own) and ``host_policy``
    let several runs share per-host permits and a ceiling per host across all of them."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    telemetry = telemetry or Telemetry.create()
    store = await open_store(workflow, out_dir, source_text, clock, persist=persist, resume=resume)
    try:
        return await _run(
            store,
            workflow,
            out_dir=out_dir,
            fetchers=fetchers,
            robots=robots,
            concurrency=concurrency,
            clock=clock,
            stop=stop,
            on_progress=on_progress,
            progress_interval_s=progress_interval_s,
            telemetry=telemetry,
            limiter=limiter,
            host_policy=host_policy,
        )
    finally:
        await store.close()


async def _run(
    store: EmbeddedStore,
    workflow: Workflow,
    *,
    out_dir: Path,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    concurrency: int,
    clock: Clock,
    stop: asyncio.Event,
    on_progress: ProgressCallback | None,
    progress_interval_s: float,
    telemetry: Telemetry,
    limiter: RateLimiter | None,
    host_policy: RatePolicy | None,
) -> RunResult:
    state, execution = store.state, store.execution
    execution_id = execution.id
    ports = Ports(
        queue=store.queue,
        seen=store.seen,
        limiter=limiter or MemoryRateLimiter(clock),
        state=state,
        blobs=LocalBlobStore(out_dir),
    )
    parts = assemble(
        ports,
        fetchers=fetchers,
        robots=robots,
        clock=clock,
        concurrency=concurrency,
        # Unique per run: a resumed run must not overwrite the part files of the first.
        worker_id=f"local-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        drain_timeout_s=STOP_DRAIN_S,
        telemetry=telemetry,
        host_policy=host_policy,
    )
    ctx = ExecutionContext.build(execution, workflow)
    parts.contexts.put(ctx)
    completion, frontier, pipeline = parts.completion, parts.frontier, parts.pipeline
    done = asyncio.Event()
    completion.on_complete(lambda _id, _result: done.set())

    # Start URLs not yet queued or finished (all of them, unless resuming).
    starts = [
        d
        for d in map(ctx.rules.start, workflow.start_urls)
        if isinstance(d, Admit) and d.url not in store.queued_or_finished
    ]
    with telemetry.execution_span(execution_id, workflow.name):
        published = await frontier.publish(ctx, starts) if starts else []
    if not published and not store.queued:
        # Nothing to crawl (every start URL out of scope, or nothing left of a resumed
        # run): complete at once; the export holds what there is.
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
        # Stopped early (Ctrl-C): what was done is still written out. The store keeps the
        # rest (the queue, the seen set), so ``--resume`` can go on from here.
        await state.transition(execution_id, "cancelled", from_statuses={"running", "pending"})
        await completion.finalize(execution_id)
    final = await state.get_execution(execution_id)
    assert final is not None
    progress = await state.progress(execution_id)
    await report()
    return RunResult(final, progress, completion.exports.get(execution_id), out_dir)


class ResumeError(InvalidInputError):
    """``--resume`` found nothing to resume, or a run of another workflow."""

    error_class = "resume"


@dataclass(slots=True)
class EmbeddedStore:
    """The adapters of one embedded execution and what a resumed one already holds."""

    execution: Execution
    state: StateStore
    seen: SeenSet
    queue: TaskQueue
    run: RunStore | None = None
    queued: int = 0  # tasks restored to the queue
    queued_or_finished: frozenset[str] = frozenset()  # their keys, and the finished ones

    async def close(self) -> None:
        if self.run is not None:
            await self.run.close()


async def open_store(
    workflow: Workflow,
    out_dir: Path,
    source_text: str,
    clock: Clock,
    *,
    persist: bool = True,
    resume: bool = False,
) -> EmbeddedStore:
    """A new execution of ``workflow`` (in memory, or in a store file with ``persist``), or
    with ``resume`` the newest unfinished one in ``out_dir``, ready to go on."""
    if resume:
        return await _resume(workflow, out_dir, clock)
    execution_id = uuid.uuid4().hex
    if not persist:
        state = MemoryStateStore()
        execution = await start_execution(state, workflow, source_text, clock, execution_id)
        queue = MemoryTaskQueue(clock, ack_deadline_s=ACK_DEADLINE_S)
        return EmbeddedStore(execution, state, MemorySeenSet(), queue)
    run = await open_run(state_file(out_dir, execution_id), clock, ack_deadline_s=ACK_DEADLINE_S)
    try:
        execution = await start_execution(run.state, workflow, source_text, clock, execution_id)
        run.db.flush()  # the run can be found (and resumed) from now on
    except BaseException:
        await run.close()
        raise
    return EmbeddedStore(execution, run.state, run.seen, run.queue, run)


async def _resume(workflow: Workflow, out_dir: Path, clock: Clock) -> EmbeddedStore:
    unfinished = [r for r in find_runs(out_dir) if r.status != "completed"]
    if not unfinished:
        raise ResumeError(
            f"--resume: no unfinished run in {out_dir} (run without --resume to start one)"
        )
    found = unfinished[0]
    try:
        run = await open_run(found.path, clock, ack_deadline_s=ACK_DEADLINE_S)
    except StoreBusy as error:
        raise ResumeError(f"--resume: {error}") from None
    try:
        execution = await _continue(run.state, found.execution_id, workflow, found.path.parent)
        finished = run.state.finished_keys(execution.id)
        queued = await run.queue.restore(keep=lambda task: task.url not in finished)
        keys = finished | {task.url for task in run.queue.queued_tasks()}
    except BaseException:
        await run.close()
        raise
    return EmbeddedStore(execution, run.state, run.seen, run.queue, run, queued, frozenset(keys))


async def _continue(
    state: StateStore, execution_id: str, workflow: Workflow, where: Path
) -> Execution:
    """The stored execution, running again, if it ran this very ``workflow``."""
    execution = await state.get_execution(execution_id)
    assert execution is not None
    stored = await state.get_workflow(TENANT, execution.workflow, execution.workflow_version)
    spec_json = msgspec.json.encode(workflow).decode()
    if stored is None or stored.spec_json != spec_json:
        raise ResumeError(
            f"--resume: {where} is a run of a different workflow "
            f"({execution.workflow!r} as it was then); run without --resume to start anew"
        )
    resumable: set[ExecutionStatus] = {"pending", "running", "cancelled", "failed"}
    await state.transition(execution_id, "running", from_statuses=resumable)
    execution = await state.get_execution(execution_id)
    assert execution is not None
    return execution


async def start_execution(
    state: StateStore,
    workflow: Workflow,
    source_text: str,
    clock: Clock,
    execution_id: str | None = None,
) -> Execution:
    """Store ``workflow`` as a new version and create a running execution of it."""
    spec_json = msgspec.json.encode(workflow).decode()
    version = await state.put_workflow(TENANT, workflow.name, source_text, spec_json)
    execution_id = execution_id or uuid.uuid4().hex
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
