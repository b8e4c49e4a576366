"""What a distributed worker runs beside its pipeline: it sees cancels, renews its leases,
completes what a dead worker left and, in its turn, re-publishes lost tasks.

Every ``status_interval_s`` it re-reads the status of the executions this process works on:
a cancelled one is seen by the processors at once (they drop its tasks) and what this worker
still holds of it is leased, so its export waits for them; an execution that has ended is
forgotten. Every ``sweep_interval_s`` (the first round after one status round) it asks
completion about each execution it knows, in case the worker whose flush finished the last
task died before completing it, then takes its part in the reconciler's round (leases, and
when it holds the ``sweep`` claim, lost tasks and settled cancels: ``worker/reconcile.py``).

Beside the rounds it runs the worker's webhook sender (``worker/webhooks.py``): woken when
this worker completes an execution or settles a cancel, when one of its retries falls due,
and every sweep interval, for calls other processes enqueued.

A backend error in a round is logged and the next round tries again; the pipeline is never
held up by the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backends.state import TERMINAL_STATUSES
from worker.assemble import Assembly
from worker.reconcile import Reconciler
from worker.webhooks import WebhookOptions, WebhookSender

log = logging.getLogger("trawl.worker")

# How often a worker re-checks the executions it works on for completion, in case the
# worker whose flush finished the last task died before completing the execution.
SWEEP_INTERVAL_S = 15.0
# How often a worker re-reads the status of the executions it works on, to see a cancel.
STATUS_INTERVAL_S = 2.0


class Supervisor:
    """The status rounds and sweeps of one worker over its assembled ``stages`` (whose
    queue should be a ``LeaseTracker``, see ``worker.reconcile.track_leases``, for the
    leases to cover what it holds), and with ``webhooks`` its webhook sender."""

    def __init__(
        self,
        stages: Assembly,
        worker_id: str,
        *,
        reconcile_after_s: float = 300.0,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        status_interval_s: float = STATUS_INTERVAL_S,
        webhooks: WebhookOptions | None = None,
    ) -> None:
        self._stages = stages
        self._sweep_interval_s = sweep_interval_s
        self._status_interval_s = status_interval_s
        self.reconciler = Reconciler.of(
            stages.ports,
            worker_id,
            reconcile_after_s=reconcile_after_s,
            interval_s=sweep_interval_s,
        )
        self.webhooks: WebhookSender | None = None
        if webhooks is not None:
            sender = WebhookSender(stages.ports.state, webhooks, poll_s=sweep_interval_s)
            stages.completion.on_complete(lambda _execution_id, _export: sender.kick())
            self.webhooks = sender

    async def run(self, stop: asyncio.Event) -> None:
        """Status rounds and sweeps (and the webhook sender) until ``stop`` is set."""
        sending = None
        if self.webhooks is not None:
            sending = asyncio.create_task(self.webhooks.run(stop), name="webhooks")
        try:
            await self._rounds(stop)
        finally:
            if sending is not None:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending

    async def _rounds(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()  # after the first status round: others see it runs
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._status_interval_s)
            await self.refresh_statuses()
            if loop.time() < next_sweep:
                continue
            next_sweep = loop.time() + self._sweep_interval_s
            await self.sweep()

    async def refresh_statuses(self) -> None:
        """Re-read the status of every execution this worker knows; lease what it holds of
        a cancelled one, forget one that has ended."""
        contexts = self._stages.contexts
        for execution_id in contexts.known():
            try:
                execution = await contexts.refresh_status(execution_id)
                if execution is not None and execution.status == "cancelled":
                    # Lease what this worker still holds of it: its export waits for them.
                    await self.reconciler.renew_leases(only=execution_id)
            except Exception as exc:  # a backend hiccup: the next round tries again
                log.warning("status refresh failed: %s", exc, extra={"execution_id": execution_id})
                continue
            if execution is None or execution.status in TERMINAL_STATUSES:
                # Nothing left to watch: without this, every execution a long-lived worker
                # ever saw would be re-read every round. A late task reloads it (and is
                # dropped, its execution having ended).
                contexts.forget(execution_id)

    async def sweep(self) -> None:
        """Complete the executions whose last task finished without completing them, then
        take this worker's part in the reconciler's round."""
        for execution_id in self._stages.contexts.known():
            try:
                await self._stages.completion.check(execution_id)
            except Exception as exc:  # a backend hiccup: the next sweep tries again
                log.warning(
                    "completion sweep failed: %s", exc, extra={"execution_id": execution_id}
                )
        try:
            await self.reconciler.round()
        except Exception as exc:  # a backend hiccup: the next sweep tries again
            log.warning("reconcile sweep failed: %s", exc)
        if self.webhooks is not None:
            self.webhooks.kick()  # a cancel settled in this round owes its call
