"""A distributed worker as a function of its ports: the pipeline behind the readiness gate
(``worker/service.py``), the supervisor beside it (``worker/supervisor.py``).

``trawl worker`` builds one over the deployment's ports and serves its health
(``trawl/worker_main.py``). Over the memory adapters the very same worker runs in a test,
to the end of what its queue holds: ``run_until_idle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from backends.clock import Clock, SystemClock
from backends.fetcher import Fetcher
from backends.ratelimit import RatePolicy
from worker.assemble import Assembly, Ports, assemble
from worker.autoscale import Concurrency
from worker.outage import DEFAULT_OUTAGE_BUDGET_S
from worker.reconcile import track_leases
from worker.robots import RobotsCache
from worker.service import Check, WorkerService
from worker.supervisor import STATUS_INTERVAL_S, SWEEP_INTERVAL_S, Supervisor
from worker.webhooks import WebhookOptions

# A Pub/Sub hand-back counts as a delivery attempt (and towards dead-lettering) and holds a
# flow-control slot while it waits: a politeness denial is waited out in place this long.
DISTRIBUTED_INLINE_WAIT_S = 60.0
# Of the grace period after a stop, what is kept for the sink's last flush.
DRAIN_FLUSH_MARGIN_S = 2.0
# How often ``until_idle`` looks at the queue.
IDLE_POLL_S = 0.02
# Allocations of container objects between two collections of the youngest generation
# (Python's default: 700); see ``tune_collector``.
GC_YOUNG_THRESHOLD = 10_000


@runtime_checkable
class CountsPending(Protocol):
    """A queue that can say how many tasks it holds that are not acked yet (the memory
    queue can; Pub/Sub cannot)."""

    def pending(self) -> int: ...


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How one worker runs; ``trawl worker`` takes them from its settings."""

    worker_id: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:6]}")
    # Tasks in flight: a fixed number, or autoscaled per engine (worker/autoscale.py).
    concurrency: int | Concurrency = 32
    grace_s: float = 8.0  # after a stop, to finish what is in flight and flush
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S
    reconcile_after_s: float = 300.0
    host_policy: RatePolicy | None = None  # the ceiling per host across executions
    sweep_interval_s: float = SWEEP_INTERVAL_S
    status_interval_s: float = STATUS_INTERVAL_S
    webhooks: WebhookOptions | None = None  # None: this worker sends no webhook calls


class Worker:
    """One distributed worker over ``ports``: its stages (the queue wrapped to track what it
    holds), the service that gates and drains them and the supervisor beside them."""

    def __init__(
        self,
        ports: Ports,
        *,
        fetchers: Mapping[str, Fetcher],
        robots: RobotsCache,
        options: WorkerOptions | None = None,
        checks: Mapping[str, Check] | None = None,
        clock: Clock | None = None,
    ) -> None:
        options = options or WorkerOptions()
        grace_s = options.grace_s
        self.options = options
        self._queue = ports.queue
        self.stages: Assembly = assemble(
            track_leases(ports),  # the reconciler's leases: worker/reconcile.py
            fetchers=fetchers,
            robots=robots,
            clock=clock or SystemClock(),
            concurrency=options.concurrency,
            worker_id=options.worker_id,
            max_inline_wait_s=DISTRIBUTED_INLINE_WAIT_S,
            # Tasks still running this long into the grace period are handed back, leaving
            # time to flush the finished ones.
            drain_timeout_s=max(grace_s - DRAIN_FLUSH_MARGIN_S, grace_s / 2),
            outage_budget_s=options.outage_budget_s,
            host_policy=options.host_policy,
        )
        self.service = WorkerService(
            self.stages.pipeline,
            grace_s=grace_s,
            checks=checks,
            outage_budget_s=options.outage_budget_s,
        )
        self.supervisor = Supervisor(
            self.stages,
            options.worker_id,
            reconcile_after_s=options.reconcile_after_s,
            sweep_interval_s=options.sweep_interval_s,
            status_interval_s=options.status_interval_s,
            webhooks=options.webhooks,
        )

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Wait for the backends, pull and run tasks until ``stop`` is set, then drain
        within the grace period. With ``until_idle`` it also stops once the queue holds no
        task that is not acked and none is in flight (the queue must count them:
        ``CountsPending``). Raises NotReady, StageFailed or DrainIncomplete
        (``worker/service.py``)."""
        tune_collector()
        stop = stop or asyncio.Event()
        ends = stop
        helpers: list[asyncio.Task[None]] = []
        if until_idle:
            if not isinstance(self._queue, CountsPending):
                raise TypeError(
                    f"until_idle needs a queue that counts its pending tasks, "
                    f"not {type(self._queue).__name__}"
                )
            ends = asyncio.Event()
            helpers.append(asyncio.create_task(self._end_when_idle(self._queue, stop, ends)))
        helpers.append(asyncio.create_task(self.supervisor.run(ends), name="supervisor"))
        try:
            await self.service.run(ends)
        finally:
            for task in helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def idle(self, queue: CountsPending) -> bool:
        """Nothing left: every task acked and none being processed."""
        return queue.pending() == 0 and self.stages.pipeline.in_flight == 0

    async def _end_when_idle(
        self, queue: CountsPending, stop: asyncio.Event, ends: asyncio.Event
    ) -> None:
        while not stop.is_set() and not self.idle(queue):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), IDLE_POLL_S)
        ends.set()


def tune_collector() -> None:
    """Once per process: set the garbage collector up for a long-lived worker.

    - Collect, then freeze every object alive now (modules, the Google, gRPC, Redis and
      Postgres clients, the stages): they live as long as the worker, yet every full
      collection would walk them all again. A worker holds about twice the objects of
      ``trawl run`` (the client libraries).
    - Collect the youngest generation every ``GC_YOUNG_THRESHOLD`` allocations of
      container objects instead of Python's 700: a worker allocates ~150 per page (its
      clients' messages, futures, protocol objects), nearly all freed by reference
      counting long before a collection would look at them.

    Measured on a 5,000-page crawl (bench/results/cpu-per-page-changes.md): 1.0 s of CPU
    in the collector before, 0.15 s after, 0.17 ms a page. Frozen objects are still freed
    when their last reference goes; only a cycle among them that dies later is never
    collected, which for objects made to live as long as the process is nothing."""
    if gc.get_freeze_count():  # done already (a process may run several workers)
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def run_until_idle(
    ports: Ports,
    *,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    options: WorkerOptions | None = None,
    clock: Clock | None = None,
) -> Worker:
    """Run a worker over ``ports`` (whose queue counts its pending tasks, e.g. the memory
    queue) until every task is acked and none is in flight, the last flush and its
    completion check included; the worker, for what it knows."""
    worker = Worker(ports, fetchers=fetchers, robots=robots, options=options, clock=clock)
    await worker.run(until_idle=True)
    return worker
