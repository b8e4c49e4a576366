"""Lost tasks, stalled executions and cancels, settled by the workers' sweep.

Leases. A worker knows which tasks it holds: every delivery from ``receive`` until its ack or
nack (``LeaseTracker`` wraps the queue). Each sweep round it writes a lease on them, one
statement per execution it holds tasks of, so a lease costs nothing per page. A lease is
live for ``LEASE_TTL_S``; a worker that dies stops renewing it.

Lost tasks. Postgres knows which tasks were registered and never finished; Pub/Sub may have
lost some (an emulator restart, a bug). A running execution with unfinished tasks and no task
finished for ``reconcile_after_s`` has its unfinished, unleased tasks registered that long
ago published again (``reclaim_tasks``). Waiting for the stall keeps a long backlog in the
queue from being published twice; a task published twice anyway (it was only slow) is
counted once and exported once.

Cancels. A cancel moves the execution to ``cancelled`` at once; workers see it within a
status round, stop taking its tasks and lease the ones they still hold. Once no task of it
is leased and ``CANCEL_SETTLE_S`` have passed since the cancel, its counters are frozen
(nothing counts after that) and the export is built from the part files then written: the
counts and the export agree, and stay as they are. Whoever writes that export enqueues the
execution's webhook call, if it names one (``worker/webhooks.py``).

Turns. Each sweep round one worker (whoever holds the ``sweep`` claim) looks at the
executions that need it, so a hundred workers do not reclaim the same tasks at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock, SystemClock
from backends.queue import Delivery, TaskQueue
from backends.state import StateStore
from backends.task import Task, decode_task
from worker.assemble import Ports
from worker.completion import Completion
from worker.context import queue_window
from worker.paths import summary_path
from worker.webhooks import enqueue_call

log = logging.getLogger(__name__)

LEASE_TTL_S = 60.0  # a lease outlives a few sweep rounds of the worker that holds it
CANCEL_SETTLE_S = 10.0  # longer than a status round: every worker has seen the cancel
SWEEP_CLAIM = "sweep"
WORKERS_QUIET_S = 45.0  # three sweep rounds without any worker taking its turn
RECLAIM_BATCH = 1000


class _TrackedDelivery(Delivery):
    __slots__ = ("_inner", "_tracker")

    def __init__(self, inner: Delivery, tracker: LeaseTracker) -> None:
        super().__init__(inner.task, inner.delivery_attempt)
        self._inner = inner
        self._tracker = tracker

    async def ack(self) -> None:
        try:
            await self._inner.ack()
        finally:
            self._tracker.release(self)

    async def nack(self, delay_s: float = 0.0) -> None:
        try:
            await self._inner.nack(delay_s)
        finally:
            self._tracker.release(self)


class LeaseTracker(TaskQueue):
    """The worker's queue, remembering each delivery it handed out until it is settled."""

    def __init__(self, inner: TaskQueue) -> None:
        self.inner = inner
        self._held: dict[int, Task] = {}

    def __getattr__(self, name: str) -> Any:  # the adapter's extras (calls, ensure_resources)
        return getattr(self.inner, name)

    async def publish(self, tasks: Sequence[Task]) -> None:
        await self.inner.publish(tasks)

    async def receive(self) -> Delivery:
        delivery = _TrackedDelivery(await self.inner.receive(), self)
        self._held[id(delivery)] = delivery.task
        return delivery

    async def close(self) -> None:
        await self.inner.close()

    def release(self, delivery: Delivery) -> None:
        self._held.pop(id(delivery), None)

    def held(self) -> dict[str, list[str]]:
        """The keys of the tasks held now, by execution."""
        keys: dict[str, list[str]] = defaultdict(list)
        for task in list(self._held.values()):
            keys[task.execution_id].append(task.ledger_key)
        return dict(keys)


def track_leases(ports: Ports) -> Ports:
    """``ports`` with a queue that tracks what this worker holds (see ``Reconciler``)."""
    return replace(ports, queue=LeaseTracker(ports.queue))


async def reconcile(
    state: StateStore, queue: TaskQueue, execution_id: str, *, after_s: float, now: datetime
) -> int:
    """Publish again the execution's unfinished, unleased tasks registered more than
    ``after_s`` ago; how many. A publish that fails leaves them for the next round. Then
    release held tasks its queue window has room for (a worker that died between counting
    finishes and releasing leaves them held with nothing queued)."""
    published = await _reclaim(
        state, queue, execution_id, before=now - timedelta(seconds=after_s), now=now
    )
    execution = await state.get_execution(execution_id)
    window = queue_window(execution) if execution is not None else 0
    if window:
        payloads = await state.release_tasks(execution_id, window=window)
        if payloads:
            await queue.publish([_republished(p, now.timestamp()) for p in payloads])
            published += len(payloads)
    return published


async def _reclaim(
    state: StateStore, queue: TaskQueue, execution_id: str, *, before: datetime, now: datetime
) -> int:
    published = 0
    while True:
        payloads = await state.reclaim_tasks(
            execution_id, registered_before=before, limit=RECLAIM_BATCH
        )
        if not payloads:
            return published
        stamp = now.timestamp()
        tasks = [_republished(payload, stamp) for payload in payloads]
        await queue.publish(tasks)
        published += len(tasks)
        log.warning(
            "re-published %d lost task(s)", len(tasks), extra={"execution_id": execution_id}
        )
        if len(payloads) < RECLAIM_BATCH:
            return published


def _republished(payload: str, stamp: float) -> Task:
    return msgspec.structs.replace(decode_task(payload.encode()), published_at=stamp)


async def settle_cancel(
    state: StateStore,
    blobs: BlobStore,
    execution_id: str,
    *,
    now: datetime,
    settle_s: float = CANCEL_SETTLE_S,
) -> bool:
    """Freeze the counters of a cancelled execution and build its export, once no worker can
    still be writing for it; True when its export is there (built now or before)."""
    execution = await state.get_execution(execution_id)
    if execution is None or execution.status != "cancelled":
        return False
    activity = await state.activity(execution_id)
    if activity.frozen_at is None:
        cancelled_at = execution.finished_at or now
        if now - cancelled_at < timedelta(seconds=settle_s) and await workers_live(
            state, at=cancelled_at
        ):
            return False
        if await state.live_leases(execution_id) > 0:
            return False
        await state.freeze(execution_id)  # False: another process froze it meanwhile
    elif await blobs.exists(summary_path(execution_id)):
        return True
    result = await Completion(state, blobs).finalize(execution_id)
    await enqueue_call(state, blobs, execution, records=result.records)
    return True


async def workers_live(state: StateStore, *, at: datetime) -> bool:
    """Whether a worker took its turn at the sweep shortly before ``at``; a live worker does
    every ``SWEEP_INTERVAL``, so none for ``WORKERS_QUIET_S`` means none is running."""
    seen = await state.last_claimed(SWEEP_CLAIM)
    return seen is not None and seen > at - timedelta(seconds=WORKERS_QUIET_S)


@dataclass
class Reconciler:
    """One worker's part in the sweep: leases every round, and its turn at the rest."""

    state: StateStore
    blobs: BlobStore
    queue: TaskQueue
    owner: str
    reconcile_after_s: float = 300.0
    interval_s: float = 15.0
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def of(cls, ports: Ports, owner: str, **settings: Any) -> Reconciler:
        return cls(ports.state, ports.blobs, ports.queue, owner, **settings)

    def _held(self) -> dict[str, list[str]]:
        return self.queue.held() if isinstance(self.queue, LeaseTracker) else {}

    async def renew_leases(self, only: str | None = None) -> None:
        """Lease the tasks this worker holds (of ``only``, or of every execution)."""
        until = self.clock.wall() + timedelta(seconds=LEASE_TTL_S)
        for execution_id, keys in self._held().items():
            if only is None or execution_id == only:
                await self.state.lease_tasks(execution_id, keys, until)

    async def round(self) -> None:
        """Renew leases; then, if it is this worker's turn, reclaim the lost tasks of stalled
        executions and settle cancelled ones."""
        await self.renew_leases()
        if not await self.state.claim(SWEEP_CLAIM, self.owner, self.interval_s):
            return
        now = self.clock.wall()
        stalled_before = now - timedelta(seconds=self.reconcile_after_s)
        for execution_id in await self.state.sweep_candidates(stalled_before=stalled_before):
            try:
                execution = await self.state.get_execution(execution_id)
                if execution is None:
                    continue
                if execution.status == "cancelled":
                    await settle_cancel(self.state, self.blobs, execution_id, now=now)
                elif execution.status == "running":
                    await reconcile(
                        self.state,
                        self.queue,
                        execution_id,
                        after_s=self.reconcile_after_s,
                        now=now,
                    )
            except Exception as exc:  # a backend hiccup: the next round tries again
                log.warning("reconcile failed: %s", exc, extra={"execution_id": execution_id})
