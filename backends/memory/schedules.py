"""The ScheduleStore of the memory (and SQLite) state store, in dicts.

A mixin of ``MemoryStateStore``: it keeps its own dicts and uses the store's clock. As in
the rest of that store, no method awaits between reading and writing, so each one is a
single atomic step on the event loop, which is what the Postgres adapter gets from row
locks (several schedulers claiming at once never take one schedule twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from backends.clock import Clock
from backends.errors import InvalidInputError
from backends.state import (
    SCHEDULE_HISTORY,
    Schedule,
    ScheduleFire,
    ScheduleStore,
)


class MemorySchedules(ScheduleStore):
    """Schedules by id, each one's live claim (its end) and its newest fires."""

    _clock: Clock
    _schedules: dict[str, Schedule]
    _claimed_until: dict[str, datetime]  # a claimed schedule's lease ends then
    _fires: dict[str, list[ScheduleFire]]  # by schedule, newest last

    def _schedule_book(self) -> dict[str, Schedule]:
        """The schedules by id (made on first use, so the store's __init__ stays its own)."""
        if not hasattr(self, "_schedules"):
            self._schedules = {}
            self._claimed_until = {}
            self._fires = {}
        return self._schedules

    async def create_schedule(self, schedule: Schedule, *, max_per_tenant: int) -> bool:
        book = self._schedule_book()
        if schedule.id in book:
            raise InvalidInputError(
                f"schedule {schedule.id!r} already exists", error_class="conflict"
            )
        if sum(1 for s in book.values() if s.tenant == schedule.tenant) >= max_per_tenant:
            return False
        book[schedule.id] = schedule
        self._fires[schedule.id] = []
        return True

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        return self._schedule_book().get(schedule_id)

    async def list_schedules(self, tenant: str) -> list[Schedule]:
        found = [s for s in self._schedule_book().values() if s.tenant == tenant]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        book = self._schedule_book()
        stored = book.get(schedule.id)
        if stored is None:
            return None
        if stored.revision != schedule.revision:
            raise InvalidInputError(
                f"schedule {schedule.id!r} was changed meanwhile", error_class="conflict"
            )
        updated = msgspec.structs.replace(
            stored,
            workflow=schedule.workflow,
            workflow_version=schedule.workflow_version,
            cron=schedule.cron,
            timezone=schedule.timezone,
            overrides=list(schedule.overrides),
            webhook=schedule.webhook,
            enabled=schedule.enabled,
            overlap=schedule.overlap,
            missed=schedule.missed,
            next_run_at=schedule.next_run_at,
            revision=stored.revision + 1,
            updated_at=self._clock.wall(),
        )
        book[schedule.id] = updated
        return updated

    async def delete_schedule(self, schedule_id: str) -> bool:
        book = self._schedule_book()
        if book.pop(schedule_id, None) is None:
            return False
        self._claimed_until.pop(schedule_id, None)
        self._fires.pop(schedule_id, None)
        return True

    async def claim_due_schedules(self, *, limit: int, lease_s: float) -> list[Schedule]:
        book = self._schedule_book()
        now = self._clock.wall()
        due = sorted(
            (
                s
                for s in book.values()
                if s.enabled
                and s.next_run_at is not None
                and s.next_run_at <= now
                and self._claimed_until.get(s.id, now) <= now
            ),
            key=lambda s: (s.next_run_at, s.id),
        )[: max(limit, 0)]
        until = now + timedelta(seconds=lease_s)
        claimed = []
        for schedule in due:
            taken = msgspec.structs.replace(schedule, claim=schedule.claim + 1)
            book[schedule.id] = taken
            self._claimed_until[schedule.id] = until
            claimed.append(taken)
        return claimed

    async def record_fires(
        self,
        schedule_id: str,
        *,
        claim: int,
        revision: int,
        fires: Sequence[ScheduleFire],
        next_run_at: datetime | None,
    ) -> bool:
        book = self._schedule_book()
        stored = book.get(schedule_id)
        if stored is None or stored.claim != claim or schedule_id not in self._claimed_until:
            return False
        changes: dict[str, object] = {"counts": _counted(stored.counts, fires)}
        if stored.revision == revision:
            changes["next_run_at"] = next_run_at
        if fires:
            changes["last_run_at"] = fires[-1].at
            changes["last_outcome"] = fires[-1].outcome
        started = [f.execution_id for f in fires if f.execution_id is not None]
        if started:
            changes["last_execution_id"] = started[-1]
        book[schedule_id] = msgspec.structs.replace(stored, **changes)
        del self._claimed_until[schedule_id]
        history = self._fires.setdefault(schedule_id, [])
        history.extend(fires)
        del history[:-SCHEDULE_HISTORY]
        return True

    async def schedule_fires(
        self, schedule_id: str, *, limit: int = SCHEDULE_HISTORY
    ) -> list[ScheduleFire]:
        self._schedule_book()
        history = self._fires.get(schedule_id, [])
        return history[::-1][: max(limit, 0)]


def _counted(counts: dict[str, int], fires: Sequence[ScheduleFire]) -> dict[str, int]:
    """``counts`` with each fire added under its outcome (a copy)."""
    total = dict(counts)
    for fire in fires:
        total[fire.outcome] = total.get(fire.outcome, 0) + fire.count
    return total
