"""The scheduler: a loop in each orchestrator process that starts the executions schedules
ask for, on the Clock port (tests drive it with a FakeClock).

Every tick (TRAWL_SCHEDULER_TICK_S) it claims the schedules that are due
(``ScheduleStore.claim_due_schedules``: several orchestrator instances split them, and a
claim lapses if its holder dies) and, for each, handles what has come due since it was last
handled:

- one fire, handled within ``missed_after_s`` of its time: it fires (schedule_fire.py:
  started, skipped while the previous execution runs, or failed to start with the reason);
- more than one, or one that is later than that (no scheduler ran: the orchestrator was
  down, or every instance was busy): they are **missed**. ``missed: skip`` records them as
  one ``missed`` entry with their count; ``missed: run_once`` records the earlier ones so
  and fires the latest now, once, as a catch-up.

Then the schedule's next fire is its first time after now, and the outcome is recorded with
the claim. A backend that does not answer leaves the schedule due, for the next tick.

``/readyz`` asks ``check``: a loop that has stopped, or whose rounds have all failed for a
while, makes the orchestrator unready instead of silently starting nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from backends.errors import PermanentError, RetryableError
from backends.state import Schedule, ScheduleFire
from orchestrator.background import Background, guarded
from orchestrator.cron import Cron, CronError
from orchestrator.schedule_fire import fire
from orchestrator.services import Services

log = logging.getLogger("trawl.scheduler")

CLAIM_BATCH = 10  # schedules claimed per round; a full batch is followed by another at once
# How long a claim holds a schedule should its scheduler die: short enough that another
# instance takes it over before its fire counts as missed (``missed_after_s``). A round slower
# than this is harmless: the fire's execution id makes a second start find the first.
LEASE_S = 30.0
MAX_MISSED_COUNTED = 10_000  # missed fires counted one by one; beyond, "10000 or more"
CHECK_NAME = "scheduler"


class Scheduler:
    """Claims due schedules and fires them, every ``tick_s`` of ``services.clock``."""

    def __init__(
        self,
        services: Services,
        *,
        tick_s: float,
        batch: int = CLAIM_BATCH,
        lease_s: float = LEASE_S,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("the scheduler's tick must be above 0 s")
        self.services = services
        self.tick_s = tick_s
        self.batch = batch
        self.lease_s = lease_s
        self._job = Background("scheduler", self.run)
        self._last_ok: float | None = None  # clock.now() of the last round that worked
        self._started: float | None = None

    @property
    def missed_after_s(self) -> float:
        """A fire handled later than this after its time counts as missed."""
        return max(60.0, 3 * self.tick_s)

    async def tick(self) -> list[tuple[Schedule, list[ScheduleFire]]]:
        """One round: claim what is due, fire it, record it. The schedules handled, with
        their fires (a schedule left due for the next round has none)."""
        state = self.services.ports.state
        claimed = await state.claim_due_schedules(limit=self.batch, lease_s=self.lease_s)
        handled = []
        for schedule in claimed:
            try:
                fires, next_run_at = await self._handle(schedule)
            except RetryableError as error:
                log.warning(
                    "schedule left due: a backend did not answer",
                    extra={"schedule": schedule.id, "error": str(error)},
                )
                fires, next_run_at = [], schedule.next_run_at
            recorded = await state.record_fires(
                schedule.id,
                claim=schedule.claim,
                revision=schedule.revision,
                fires=fires,
                next_run_at=next_run_at,
            )
            if not recorded:
                log.warning(
                    "schedule outcome not recorded: its claim lapsed",
                    extra={"schedule": schedule.id},
                )
            handled.append((schedule, fires))
        return handled

    async def _handle(self, schedule: Schedule) -> tuple[list[ScheduleFire], datetime | None]:
        """The fires due by now, and the next time after now."""
        now = self.services.clock.wall()
        due = schedule.next_run_at
        assert due is not None  # claimed: enabled and due
        try:
            cron = Cron.parse(schedule.cron, schedule.timezone)
        except CronError as error:  # e.g. the zone left the system's zone database
            refused = ScheduleFire(
                scheduled_for=due, at=now, outcome="failed_to_start", reason=str(error)
            )
            return [refused], None
        passed = [due, *_until(now, cron.times_after(due))]
        next_run_at = cron.next_after(now)
        late_s = (now - due).total_seconds()
        if len(passed) == 1 and late_s <= self.missed_after_s:
            return [await fire(self.services, schedule, due)], next_run_at
        if schedule.missed == "skip":
            why = "no scheduler ran at its time; missed-run policy skip"
            return [_missed(passed, now, why)], next_run_at
        fires = []
        if len(passed) > 1:
            why = "no scheduler ran at their time; missed-run policy run_once runs the latest"
            fires.append(_missed(passed[:-1], now, why))
        latest = passed[-1]
        late = (
            f"catch-up run {(now - latest).total_seconds():.0f} s late (missed-run policy run_once)"
        )
        fires.append(await fire(self.services, schedule, latest, note=late))
        return fires, next_run_at

    # -- the loop

    async def run(self) -> None:
        """Tick until cancelled. A failed round is logged and the next one tried; ``check``
        tells /readyz when they keep failing."""
        clock = self.services.clock
        self._started = clock.now()
        while True:
            handled = await guarded(log, "scheduler round", self.tick)
            full = False
            if handled is not None:
                # More may be due: go on at once, unless a backend left them due.
                full = sum(1 for _, fires in handled if fires) >= self.batch
                self._last_ok = clock.now()
            if not full:
                await clock.sleep(self.tick_s)

    def start(self) -> None:
        """Run the loop in the background (``stop`` ends it)."""
        self._job.start()

    async def stop(self) -> None:
        await self._job.stop()

    async def check(self) -> None:
        """For /readyz: PermanentError when the loop is not running, or when no round has
        worked for six ticks (at least a minute)."""
        task = self._job.task
        if task is None or task.done():
            raise PermanentError(
                "the scheduler loop is not running", error_class="scheduler_stopped"
            )
        now = self.services.clock.now()
        since = self._last_ok if self._last_ok is not None else self._started
        if since is not None and now - since > max(60.0, 6 * self.tick_s):
            raise PermanentError(
                f"no scheduler round has worked for {now - since:.0f} s",
                error_class="scheduler_failing",
            )


def _until(now: datetime, times: Any) -> list[datetime]:
    """The times up to ``now``, at most MAX_MISSED_COUNTED."""
    return list(
        itertools.islice(itertools.takewhile(lambda t: t <= now, times), MAX_MISSED_COUNTED)
    )


def _missed(passed: list[datetime], now: datetime, why: str) -> ScheduleFire:
    count = len(passed)
    many = f"{count} or more" if count >= MAX_MISSED_COUNTED else str(count)
    span = (
        f"at {passed[0]:%Y-%m-%d %H:%M}Z"
        if count == 1
        else (f"from {passed[0]:%Y-%m-%d %H:%M}Z to {passed[-1]:%Y-%m-%d %H:%M}Z")
    )
    return ScheduleFire(
        scheduled_for=passed[0],
        at=now,
        outcome="missed",
        reason=f"{many} fire(s) due {span} missed: {why}",
        count=count,
    )


def scheduler_lifespan(
    services: Services,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan hook: with ``Limits.scheduler_tick_s`` > 0, a Scheduler runs
    while the app serves, and /readyz checks it (as ``scheduler``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        tick_s = services.limits.scheduler_tick_s
        if tick_s <= 0:
            yield
            return
        scheduler = Scheduler(services, tick_s=tick_s)
        services.checks[CHECK_NAME] = scheduler.check
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()
            services.checks.pop(CHECK_NAME, None)

    return lifespan
