"""A crawl that ends: the runtime of ``trawl run``.

A distributed worker runs until it is told to stop (``worker/runtime.py``); an embedded run
is the same pipeline (``worker/assemble.py``) run until its one execution completes, a stop
(Ctrl-C) arrives or a stage dies, reporting progress as it goes. What it runs over (the
memory or SQLite adapters, the output directory) and how the execution was started or
resumed is for the composition root, ``trawl/embedded.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from backends.clock import Clock
from backends.fetcher import Fetcher
from backends.ratelimit import RatePolicy
from backends.state import Execution, Progress
from worker.assemble import Assembly, Ports, assemble
from worker.autoscale import Concurrency
from worker.export import ExportResult
from worker.robots import RobotsCache
from worker.telemetry import Telemetry

# On a stop (Ctrl-C), pages being fetched get this long to finish and be counted; the ones
# still going are abandoned (not counted, not in the export) so the run ends promptly.
STOP_DRAIN_S = 5.0

# Called with the execution's progress and the seconds since the run began.
ProgressCallback = Callable[[Progress, float], None]


@dataclass(slots=True)
class Ended:
    """How an embedded run ended: the execution's last status, its counts and its export
    (None when none was written)."""

    execution: Execution
    progress: Progress
    export: ExportResult | None


def assemble_embedded(
    ports: Ports,
    *,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    clock: Clock,
    concurrency: int | Concurrency,
    telemetry: Telemetry | None = None,
    host_policy: RatePolicy | None = None,
    drained: Callable[[], bool] | None = None,
) -> Assembly:
    """The pipeline of one embedded run over ``ports``: a short drain on a stop, and a
    worker name of its own so a resumed run never overwrites the part files of the first.
    ``drained``: whether the run's queue has nothing left to hand out; the last pages are
    then counted at once, not after the sink's batching delay (worker/assemble.py)."""
    return assemble(
        ports,
        fetchers=fetchers,
        robots=robots,
        clock=clock,
        concurrency=concurrency,
        worker_id=f"local-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        drain_timeout_s=STOP_DRAIN_S,
        telemetry=telemetry,
        host_policy=host_policy,
        drained=drained,
    )


async def run_until_complete(
    stages: Assembly,
    execution_id: str,
    *,
    clock: Clock,
    stop: asyncio.Event,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
) -> Ended:
    """Run ``stages`` until ``execution_id`` (started already) completes or ``stop`` is set.

    A stop marks the execution cancelled and still writes the export of what was done; the
    store keeps the rest for a resume. A stage that dies fails the execution, writes the
    export of what was done and raises why."""
    state, completion = stages.ports.state, stages.completion
    done = asyncio.Event()
    completion.on_complete(lambda id_, _result: done.set() if id_ == execution_id else None)
    if execution_id in completion.exports:  # completed while it was started
        done.set()

    pipeline_stop = asyncio.Event()
    run_task = asyncio.create_task(stages.pipeline.run(pipeline_stop), name="pipeline")
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
    return Ended(final, progress, completion.exports.get(execution_id))


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
