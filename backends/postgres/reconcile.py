"""The reconciler's SQL: task leases, reclaiming lost tasks, activity, freezing the counters
of an ended execution, sweep candidates and claims (see ``worker/reconcile.py``).

None of it runs per page: leases are renewed by each worker's sweep, the rest by the one
worker whose turn the sweep is, or by a command.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from backends.postgres import counters
from backends.postgres.counters import CounterTarget
from backends.state import Activity

if TYPE_CHECKING:
    from backends.postgres.pool import Connection


@functools.cache
def _lease_sql(target: CounterTarget) -> str:
    """Leases the unfinished keys of $2 until $3, their rows locked in key-hash order as
    every writer of tasks locks them (so a lease and a finish cannot deadlock), and stamps
    the target's ``last_leased_at`` with $4."""
    return f"""
WITH held AS (
    SELECT key_hash FROM tasks
    WHERE execution_id = $1 AND outcome IS NULL
      AND key_hash = ANY(ARRAY(SELECT sha256(convert_to(k, 'UTF8')) FROM unnest($2::text[]) AS k))
    ORDER BY key_hash
    FOR UPDATE
),
leased AS (
    UPDATE tasks t SET leased_until = $3
    WHERE t.execution_id = $1 AND t.key_hash = ANY(ARRAY(SELECT key_hash FROM held))
    RETURNING 1
),
deltas AS (
    SELECT count(*) > 0 AS changed, $4::timestamptz AS last_leased_at FROM leased
),
stamped AS ({target.bump((), ("last_leased_at",))})
SELECT count(*) FROM leased
"""


LIVE_LEASES = """
SELECT count(*) FROM tasks
WHERE execution_id = $1 AND outcome IS NULL AND leased_until > $2
"""

# Rows a finish is writing are skipped, not waited for (it is finishing them anyway).
RECLAIM = """
WITH stale AS (
    SELECT key_hash FROM tasks
    WHERE execution_id = $1 AND outcome IS NULL AND task IS NOT NULL AND NOT held
      AND registered_at < $2 AND (leased_until IS NULL OR leased_until <= $3)
    ORDER BY registered_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET registered_at = $3
FROM stale WHERE t.execution_id = $1 AND t.key_hash = stale.key_hash
RETURNING t.task
"""

# One statement: it takes the execution's counters row lock, so it waits for a write that
# holds it (a bounded registration, a release, a write of the one-row mode, a process's
# first write to a shard: counters.enter_shard), and every later one sees frozen_at. On its
# own it is enough for an execution nobody writes to any more (retention's): writers read
# this row too. ``freeze`` then freezes the shard rows (FREEZE_SHARDS).
FREEZE = """
INSERT INTO task_counters AS c (execution_id, frozen_at)
SELECT $1, $2 WHERE EXISTS (
    SELECT 1 FROM executions
    WHERE id = $1 AND status IN ('completed', 'cancelled', 'failed')
)
ON CONFLICT (execution_id) DO UPDATE SET frozen_at = excluded.frozen_at
WHERE c.frozen_at IS NULL AND EXISTS (
    SELECT 1 FROM executions
    WHERE id = $1 AND status IN ('completed', 'cancelled', 'failed')
)
RETURNING 1
"""

# Every shard row locked FOR UPDATE, which waits for each write holding one (its KEY SHARE
# lock, see counters.enter_shard), then frozen. A statement of its own, after FREEZE: it
# sees every shard row, one a writer was creating before FREEZE got its lock included.
FREEZE_SHARDS = """
WITH locked AS (
    SELECT shard FROM task_counter_shards WHERE execution_id = $1 ORDER BY shard FOR UPDATE
)
UPDATE task_counter_shards s SET frozen_at = $2
FROM locked WHERE s.execution_id = $1 AND s.shard = locked.shard AND s.frozen_at IS NULL
"""

# Running executions with unfinished tasks and no finish since $1 (their counters summed
# over their row and shards), and cancelled ones whose counters are not frozen yet.
SWEEP_CANDIDATES = """
SELECT id FROM (
    SELECT e.id, e.created_at FROM executions e
    CROSS JOIN LATERAL (
        SELECT sum(u.published) AS published, sum(u.finished) AS finished,
            max(u.last_finished_at) AS last_finished_at
        FROM (
            SELECT published, finished, last_finished_at FROM task_counters
            WHERE execution_id = e.id
            UNION ALL
            SELECT published, finished, last_finished_at FROM task_counter_shards
            WHERE execution_id = e.id
        ) AS u
    ) AS c
    WHERE e.status = 'running' AND c.finished < c.published
      AND coalesce(c.last_finished_at, e.started_at, e.created_at) < $1
    UNION ALL
    SELECT e.id, e.created_at FROM executions e
    LEFT JOIN task_counters c ON c.execution_id = e.id
    WHERE e.status = 'cancelled' AND c.frozen_at IS NULL
) AS found
ORDER BY created_at, id
LIMIT $2
"""

CLAIM = """
INSERT INTO claims AS c (name, owner, claimed_at, until) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
SET owner = excluded.owner, claimed_at = excluded.claimed_at, until = excluded.until
WHERE c.owner = excluded.owner OR c.until <= excluded.claimed_at
RETURNING 1
"""

LAST_CLAIMED = "SELECT claimed_at FROM claims WHERE name = $1"


async def lease(
    conn: Connection,
    target: CounterTarget,
    execution_id: str,
    keys: Sequence[str],
    *,
    until: datetime,
    at: datetime,
) -> int:
    leased: int
    if target.single:
        async with conn.transaction():
            # Created if missing: shard writers may have registered the execution's tasks.
            await counters.lock_central(conn, execution_id)
            leased = await conn.fetchval(_lease_sql(target), execution_id, list(keys), until, at)
        return leased
    leased = await conn.fetchval(_lease_sql(target), execution_id, list(keys), until, at)
    return leased


async def activity(conn: Connection, execution_id: str) -> Activity:
    return await counters.activity(conn, execution_id)


async def freeze(conn: Connection, execution_id: str, at: datetime) -> bool:
    """Freeze the counters of an ended execution (``TaskLedger.freeze``); True if this call
    froze them. Once it returns nothing counts for the execution any more: writes that were
    in progress have committed (FREEZE_SHARDS waited for them), later ones find it frozen."""
    async with conn.transaction():
        if await conn.fetchval(FREEZE, execution_id, at) is None:
            return False
        await conn.execute(FREEZE_SHARDS, execution_id, at)
    return True
