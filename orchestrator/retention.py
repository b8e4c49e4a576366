"""The retention job: a loop in each orchestrator process that prunes, once an hour, what
executions that ended more than ``TRAWL_RETENTION_DAYS`` ago no longer need
(``worker/retention.py``; docs/operations.md, "Retention").

The orchestrator runs it because it is the process a deployment always keeps (Cloud Run:
at least one instance, CPU always allocated, for the scheduler), while workers come and go
with the backlog. Of several instances, the one holding the ``retention`` claim does a
round; the claim lasts one interval, so another instance takes over within the hour should
it die. Two rounds at once would be harmless all the same: the deletes skip the rows the
other holds.

The first round waits a few minutes after start, so a process starting (or restarting in a
rollout) serves its first requests without it. A failed round is logged and the next one
comes an interval later; nothing waits on this loop, and /readyz does not ask it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from backends.clock import Clock
from backends.state import PruneCounts, StateStore
from orchestrator.background import Background, guarded
from orchestrator.services import Services
from worker.retention import describe, prune

log = logging.getLogger("trawl.retention")

CLAIM = "retention"
INTERVAL_S = 3600.0
FIRST_DELAY_S = 300.0


class RetentionJob:
    """Prunes ``state`` every ``interval_s`` of ``clock``, keeping ``days`` of ended
    executions, while this process holds the claim."""

    def __init__(
        self,
        state: StateStore,
        clock: Clock,
        *,
        days: int,
        owner: str | None = None,
        interval_s: float = INTERVAL_S,
        first_delay_s: float = FIRST_DELAY_S,
    ) -> None:
        if days < 1:
            raise ValueError("the retention job needs a retention of at least 1 day")
        if interval_s <= 0:
            raise ValueError("the retention job's interval must be above 0 s")
        self.state = state
        self.clock = clock
        self.days = days
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.interval_s = interval_s
        self.first_delay_s = first_delay_s
        self._job = Background("retention", self.run)

    async def round(self) -> PruneCounts | None:
        """One round: prune if this process holds the claim (None if another does)."""
        if not await self.state.claim(CLAIM, self.owner, self.interval_s):
            return None
        counts = await prune(self.state, now=self.clock.wall(), days=self.days)
        if counts.executions or counts.claims:
            log.info("retention: pruned %s", describe(counts), extra={"days": self.days})
        return counts

    async def run(self) -> None:
        """Rounds until cancelled; a failed one is logged, the next comes an interval later."""
        await self.clock.sleep(self.first_delay_s)
        while True:
            await guarded(log, "retention round", self.round)  # the next one tries again
            await self.clock.sleep(self.interval_s)

    def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        await self._job.stop()


def retention_lifespan(
    services: Services,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan hook: with ``Limits.retention_days`` > 0 the job runs while the
    app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        days = services.limits.retention_days
        if days <= 0:
            yield
            return
        job = RetentionJob(services.ports.state, services.clock, days=days)
        job.start()
        try:
            yield
        finally:
            await job.stop()

    return lifespan
