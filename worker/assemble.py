"""One place that wires the worker's stages over a set of ports.

The embedded run and the distributed worker are the same pipeline over different adapters;
both get it from here, so a stage added to one cannot be missing from the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backends.blobs import BlobStore
from backends.clock import Clock
from backends.errors import PermanentError
from backends.fetcher import Fetcher
from backends.queue import TaskQueue
from backends.ratelimit import RateLimiter, RatePolicy
from backends.seen import SeenSet
from backends.state import StateStore
from worker.autoscale import Concurrency
from worker.completion import Completion
from worker.context import ExecutionCache
from worker.frontier import Frontier
from worker.outage import DEFAULT_OUTAGE_BUDGET_S
from worker.pipeline import Pipeline
from worker.process import MAX_INLINE_WAIT_S, TaskProcessor
from worker.robots import RobotsCache
from worker.sink import Sink
from worker.telemetry import Telemetry


@dataclass(slots=True, frozen=True)
class Ports:
    """The adapters a worker runs over."""

    queue: TaskQueue
    seen: SeenSet
    limiter: RateLimiter
    state: StateStore
    blobs: BlobStore


@dataclass(slots=True)
class Assembly:
    """The wired stages; ``pipeline.run(stop)`` runs them."""

    ports: Ports
    contexts: ExecutionCache
    frontier: Frontier
    completion: Completion
    pipeline: Pipeline


def assemble(
    ports: Ports,
    *,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    clock: Clock,
    concurrency: int | Concurrency,
    worker_id: str,
    sink_batch: int = 256,
    sink_delay_s: float = 0.5,
    drain_timeout_s: float | None = None,
    max_inline_wait_s: float = MAX_INLINE_WAIT_S,
    telemetry: Telemetry | None = None,
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
    host_policy: RatePolicy | None = None,
    drained: Callable[[], bool] | None = None,
) -> Assembly:
    """Wire receive → process → sink → ack over ``ports``; after each flush, held tasks are
    released into the room finishes made, then completion is checked. ``concurrency``: a
    fixed number of tasks in flight, or each engine's level autoscaled (worker/autoscale.py).
    ``drained``: true when the queue has nothing more to hand out (an embedded run's own
    queue); with no task in flight either, the sink flushes at once instead of waiting out
    its delay, so the last pages complete the execution without an idle wait."""
    if not isinstance(concurrency, Concurrency):
        concurrency = Concurrency.fixed(concurrency)
    telemetry = telemetry or Telemetry.create()
    telemetry.watch_concurrency(concurrency.levels)
    contexts = ExecutionCache(ports.state)
    completion = Completion(ports.state, ports.blobs, clock)
    frontier = Frontier(ports.seen, ports.state, ports.queue, clock)

    async def release(execution_id: str) -> None:
        try:
            ctx = await contexts.get(execution_id)
        except PermanentError:  # an execution deleted meanwhile: nothing of it to publish
            return
        await frontier.release(ctx)

    processor = TaskProcessor(
        contexts=contexts,
        fetchers=fetchers,
        limiter=ports.limiter,
        robots=robots,
        frontier=frontier,
        clock=clock,
        max_inline_wait_s=max_inline_wait_s,
        telemetry=telemetry,
        host_policy=host_policy,
        gates=concurrency,
    )
    sink = Sink(
        blobs=ports.blobs,
        state=ports.state,
        clock=clock,
        worker_id=worker_id,
        max_batch=sink_batch,
        max_delay_s=sink_delay_s,
        on_counted=release,
        on_flushed=completion.check,
        outage_budget_s=outage_budget_s,
    )
    pipeline = Pipeline(
        queue=ports.queue,
        processor=processor,
        sink=sink,
        concurrency=concurrency,
        drain_timeout_s=drain_timeout_s,
        outage_budget_s=outage_budget_s,
        clock=clock,
    )
    if drained is not None:
        is_drained = drained
        sink.idle = lambda: pipeline.in_flight == 0 and is_drained()
    return Assembly(ports, contexts, frontier, completion, pipeline)
