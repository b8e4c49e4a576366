"""The ScheduleStore of ``PostgresStateStore``, a mixin over its pool and clock.

Claiming takes due rows with ``FOR UPDATE SKIP LOCKED`` and bumps their claim in the same
statement, so schedulers of several orchestrator instances claiming at once split the due
schedules between them instead of waiting on each other or taking one twice. Recording a
claim's outcome is one short transaction: the row (only while that claim is its last), then
the history, trimmed to its newest SCHEDULE_HISTORY fires. A tenant's schedules are counted
under a transaction-scoped advisory lock (it works through PgBouncer's transaction pooling),
so concurrent creations cannot overshoot the cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from backends.clock import Clock
from backends.errors import InvalidInputError
from backends.state import SCHEDULE_HISTORY, Schedule, ScheduleFire, ScheduleStore

if TYPE_CHECKING:
    from backends.postgres.pool import Connection, PostgresPool

_COLUMNS = (
    "id, tenant, workflow, workflow_version, cron, timezone, overrides, webhook, enabled,"
    " overlap, missed, next_run_at, last_run_at, last_outcome, last_execution_id, started,"
    " skipped_overlap, missed_fires, failed_to_start, revision, claim, created_at, updated_at"
)
# The outcome of a fire -> the column counting it.
_COUNT_COLUMNS = {
    "started": "started",
    "skipped_overlap": "skipped_overlap",
    "missed": "missed_fires",
    "failed_to_start": "failed_to_start",
}

_LOCK_TENANT = "SELECT pg_advisory_xact_lock(hashtextextended('trawl-schedules:' || $1, 0))"
_INSERT = (
    "INSERT INTO schedules (id, tenant, workflow, workflow_version, cron, timezone, overrides,"
    " webhook, enabled, overlap, missed, next_run_at, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    " ON CONFLICT (id) DO NOTHING RETURNING 1"
)
_UPDATE = f"""
UPDATE schedules SET
    workflow = $3, workflow_version = $4, cron = $5, timezone = $6, overrides = $7,
    webhook = $8, enabled = $9, overlap = $10, missed = $11, next_run_at = $12,
    revision = revision + 1, updated_at = $13
WHERE id = $1 AND revision = $2
RETURNING {_COLUMNS}
"""
_CLAIM = f"""
WITH due AS (
    SELECT id FROM schedules
    WHERE enabled AND next_run_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY next_run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE schedules s SET claim = s.claim + 1, claimed_until = $3
FROM due WHERE s.id = due.id
RETURNING {", ".join(f"s.{c.strip()}" for c in _COLUMNS.split(","))}
"""
# $5..$8: fires to add per outcome; $9: the last fire's time and $10 its outcome (NULL:
# no fire); $11: the last execution started (NULL: keep).
_RECORD = """
UPDATE schedules SET
    next_run_at = CASE WHEN revision = $3 THEN $4 ELSE next_run_at END,
    started = started + $5,
    skipped_overlap = skipped_overlap + $6,
    missed_fires = missed_fires + $7,
    failed_to_start = failed_to_start + $8,
    last_run_at = coalesce($9, last_run_at),
    last_outcome = coalesce($10, last_outcome),
    last_execution_id = coalesce($11, last_execution_id),
    claimed_until = NULL
WHERE id = $1 AND claim = $2 AND claimed_until IS NOT NULL
RETURNING 1
"""
_INSERT_FIRES = """
INSERT INTO schedule_fires (schedule_id, scheduled_for, at, outcome, execution_id, reason, count)
SELECT $1, f.scheduled_for, f.at, f.outcome, f.execution_id, f.reason, f.count
FROM unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
            $7::int[]) AS f(scheduled_for, at, outcome, execution_id, reason, count)
"""
_TRIM_FIRES = """
DELETE FROM schedule_fires WHERE schedule_id = $1 AND id < (
    SELECT min(id) FROM (
        SELECT id FROM schedule_fires WHERE schedule_id = $1 ORDER BY id DESC LIMIT $2
    ) AS kept
)
"""
_FIRES = (
    "SELECT scheduled_for, at, outcome, execution_id, reason, count FROM schedule_fires"
    " WHERE schedule_id = $1 ORDER BY id DESC LIMIT $2"
)


class PostgresSchedules(ScheduleStore):
    """Schedules in the ``schedules`` and ``schedule_fires`` tables (migration 0010)."""

    pool: PostgresPool
    _clock: Clock

    async def create_schedule(self, schedule: Schedule, *, max_per_tenant: int) -> bool:
        s = schedule
        args = (s.id, s.tenant, s.workflow, s.workflow_version, s.cron, s.timezone)
        more = (list(s.overrides), s.webhook, s.enabled, s.overlap, s.missed, s.next_run_at)

        async def op(conn: Connection) -> str:
            async with conn.transaction():
                await conn.execute(_LOCK_TENANT, s.tenant)
                held = await conn.fetchval(
                    "SELECT count(*) FROM schedules WHERE tenant = $1", s.tenant
                )
                if held >= max_per_tenant:
                    return "capped"
                inserted = await conn.fetchval(_INSERT, *args, *more, s.created_at, s.updated_at)
                return "exists" if inserted is None else "created"

        outcome = await self.pool.run(op, idempotent=False)
        if outcome == "exists":
            raise InvalidInputError(f"schedule {s.id!r} already exists", error_class="conflict")
        return outcome == "created"

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        rows = await self._schedule_rows(
            f"SELECT {_COLUMNS} FROM schedules WHERE id = $1", schedule_id
        )
        return rows[0] if rows else None

    async def list_schedules(self, tenant: str) -> list[Schedule]:
        query = f"SELECT {_COLUMNS} FROM schedules WHERE tenant = $1 ORDER BY created_at, id"
        return await self._schedule_rows(query, tenant)

    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        s = schedule
        args = (s.id, s.revision, s.workflow, s.workflow_version, s.cron, s.timezone)
        more = (list(s.overrides), s.webhook, s.enabled, s.overlap, s.missed, s.next_run_at)
        now = self._clock.wall()

        async def op(conn: Connection) -> tuple[Any, bool]:
            row = await conn.fetchrow(_UPDATE, *args, *more, now)
            if row is not None:
                return row, True
            exists = await conn.fetchval("SELECT 1 FROM schedules WHERE id = $1", s.id)
            return None, exists is not None

        # Not idempotent: run twice, the second would find the revision it made.
        row, exists = await self.pool.run(op, idempotent=False)
        if row is not None:
            return _schedule(row)
        if exists:
            raise InvalidInputError(
                f"schedule {s.id!r} was changed meanwhile", error_class="conflict"
            )
        return None

    async def delete_schedule(self, schedule_id: str) -> bool:
        async def op(conn: Connection) -> str:
            return await conn.execute("DELETE FROM schedules WHERE id = $1", schedule_id)

        # Not idempotent: run twice, the second would say there was nothing to delete.
        return await self.pool.run(op, idempotent=False) != "DELETE 0"

    async def claim_due_schedules(self, *, limit: int, lease_s: float) -> list[Schedule]:
        if limit <= 0:
            return []
        now = self._clock.wall()
        until = now + timedelta(seconds=lease_s)

        async def op(conn: Connection) -> list[Schedule]:
            return [_schedule(row) for row in await conn.fetch(_CLAIM, now, limit, until)]

        # Not idempotent: a second run would claim them again.
        claimed = await self.pool.run(op, idempotent=False)
        return sorted(claimed, key=lambda s: (s.next_run_at, s.id))

    async def record_fires(
        self,
        schedule_id: str,
        *,
        claim: int,
        revision: int,
        fires: Sequence[ScheduleFire],
        next_run_at: datetime | None,
    ) -> bool:
        added = {outcome: 0 for outcome in _COUNT_COLUMNS}
        for fire in fires:
            added[fire.outcome] += fire.count
        last = fires[-1] if fires else None
        started = [f.execution_id for f in fires if f.execution_id is not None]
        record = (
            schedule_id,
            claim,
            revision,
            next_run_at,
            *added.values(),
            last.at if last else None,
            last.outcome if last else None,
            started[-1] if started else None,
        )
        columns = (
            [f.scheduled_for for f in fires],
            [f.at for f in fires],
            [f.outcome for f in fires],
            [f.execution_id for f in fires],
            [f.reason for f in fires],
            [f.count for f in fires],
        )

        async def op(conn: Connection) -> bool:
            async with conn.transaction():
                if await conn.fetchval(_RECORD, *record) is None:
                    return False
                if fires:
                    await conn.execute(_INSERT_FIRES, schedule_id, *columns)
                    await conn.execute(_TRIM_FIRES, schedule_id, SCHEDULE_HISTORY)
                return True

        # Idempotent in effect: run again after a lost commit, it finds the claim released
        # and changes nothing.
        return await self.pool.run(op, idempotent=True)

    async def schedule_fires(
        self, schedule_id: str, *, limit: int = SCHEDULE_HISTORY
    ) -> list[ScheduleFire]:
        if limit <= 0:
            return []

        async def op(conn: Connection) -> list[ScheduleFire]:
            rows = await conn.fetch(_FIRES, schedule_id, limit)
            return [ScheduleFire(**dict(row)) for row in rows]

        return await self.pool.run(op, idempotent=True)

    async def _schedule_rows(self, query: str, *args: object) -> list[Schedule]:
        async def op(conn: Connection) -> list[Schedule]:
            return [_schedule(row) for row in await conn.fetch(query, *args)]

        return await self.pool.run(op, idempotent=True)


def _schedule(row: Any) -> Schedule:
    values = dict(row)
    counts = {outcome: int(values.pop(column)) for outcome, column in _COUNT_COLUMNS.items()}
    values["overrides"] = list(values["overrides"])
    return Schedule(**values, counts={k: v for k, v in counts.items() if v})
