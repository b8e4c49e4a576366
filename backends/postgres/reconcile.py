"""The reconciler's SQL: task leases, reclaiming lost tasks, activity, freezing the counters
of an ended execution, sweep candidates and claims (see ``worker/reconcile.py``).

None of it runs per page: leases are renewed by each worker's sweep, the rest by the one
worker whose turn the sweep is, or by a command.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from backends.state import Activity

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

# Locks the counters row first, as every writer of tasks does, so leases cannot deadlock
# with a finish (which locks the counters row, then task rows).
_LOCK = "SELECT 1 FROM task_counters WHERE execution_id = $1 FOR UPDATE"

_LEASE = """
WITH leased AS (
    UPDATE tasks SET leased_until = $3
    WHERE execution_id = $1 AND outcome IS NULL
      AND key_hash IN (SELECT sha256(convert_to(k, 'UTF8')) FROM unnest($2::text[]) AS k)
    RETURNING 1
),
stamped AS (
    UPDATE task_counters SET last_leased_at = $4
    WHERE execution_id = $1 AND EXISTS (SELECT 1 FROM leased)
)
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

ACTIVITY = """
SELECT last_finished_at, last_leased_at, frozen_at FROM task_counters WHERE execution_id = $1
"""

# One statement: it takes the counters row lock, so it waits for a finish in progress and
# every later finish sees frozen_at.
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

SWEEP_CANDIDATES = """
SELECT id FROM (
    SELECT e.id, e.created_at FROM executions e
    JOIN task_counters c ON c.execution_id = e.id
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
    conn: Connection, execution_id: str, keys: Sequence[str], until: datetime, at: datetime
) -> int:
    async with conn.transaction():
        if await conn.fetchval(_LOCK, execution_id) is None:
            return 0  # no task was ever added to it
        leased: int = await conn.fetchval(_LEASE, execution_id, list(keys), until, at)
    return leased


async def activity(conn: Connection, execution_id: str) -> Activity:
    row = await conn.fetchrow(ACTIVITY, execution_id)
    return Activity() if row is None else Activity(**dict(row))
