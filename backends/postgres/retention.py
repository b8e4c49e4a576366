"""Row retention in SQL: what an execution that ended long ago no longer needs, deleted in
small batches (see ``RetentionStore`` in ``backends/state.py``).

Every delete is one statement over at most ``batch`` rows, picked by ``ctid`` with
``FOR UPDATE SKIP LOCKED``: a short transaction that holds a few thousand row locks at most
and never waits for another pruner, so several processes can prune at once (each takes rows
the others do not hold) while the workers go on. A statement that deletes fewer rows than
it may has found every row left unheld, so the loop stops there. The rows of one execution
are found through the primary keys (``tasks``, ``outputs``: ``execution_id`` first), and the
``ctid`` list makes the delete itself a TID scan.

No new index: the candidate query reads ``executions`` (one row per run) and probes the
other tables' primary keys, once an hour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from backends.state import PruneCounts, check_prune_batch

if TYPE_CHECKING:
    from backends.postgres.pool import Connection, PostgresPool

# An ended execution, before the cutoff ($1), whose cancel (if it was one) has settled: its
# counters frozen. (Freezing a cancelled one here would keep the sweep from writing its
# export.)
_ELIGIBLE = """
e.status IN ('completed', 'cancelled', 'failed') AND e.finished_at < $1
AND (e.status <> 'cancelled' OR EXISTS (
    SELECT 1 FROM task_counters c WHERE c.execution_id = e.id AND c.frozen_at IS NOT NULL
))
"""

_LEFT = """
EXISTS (SELECT 1 FROM tasks t WHERE t.execution_id = e.id)
OR EXISTS (SELECT 1 FROM outputs o WHERE o.execution_id = e.id AND o.kind = 'part')
OR EXISTS (SELECT 1 FROM login_sessions s WHERE s.execution_id = e.id)
OR EXISTS (SELECT 1 FROM webhooks w WHERE w.execution_id = e.id AND w.status <> 'pending')
"""

# $1 the cutoff, $2 the last id of the previous page, $3 how many.
PRUNABLE = f"""
SELECT e.id FROM executions e
WHERE e.id > $2 AND ({_ELIGIBLE}) AND ({_LEFT})
ORDER BY e.id
LIMIT $3
"""

# $1 the cutoff, $2 the execution.
ELIGIBLE = f"SELECT 1 FROM executions e WHERE e.id = $2 AND ({_ELIGIBLE})"

COUNT = """
SELECT
    (SELECT count(*) FROM tasks WHERE execution_id = $1) AS tasks,
    (SELECT count(*) FROM outputs WHERE execution_id = $1 AND kind = 'part') AS part_outputs,
    (SELECT count(*) FROM login_sessions WHERE execution_id = $1) AS sessions,
    (SELECT count(*) FROM webhooks WHERE execution_id = $1 AND status <> 'pending') AS webhooks
"""

# $1 the execution, $2 the batch.
DELETE_TASKS = """
DELETE FROM tasks WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM tasks WHERE execution_id = $1
    LIMIT $2 FOR UPDATE SKIP LOCKED
))
"""

DELETE_PARTS = """
DELETE FROM outputs WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM outputs WHERE execution_id = $1 AND kind = 'part'
    LIMIT $2 FOR UPDATE SKIP LOCKED
))
"""

DELETE_SESSION = "DELETE FROM login_sessions WHERE execution_id = $1"

# A pending call is still owed: only a delivered or failed one goes.
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE execution_id = $1 AND status <> 'pending'"

# $1 expired before, $2 the batch.
COUNT_CLAIMS = "SELECT count(*) FROM claims WHERE until < $1"

DELETE_CLAIMS = """
DELETE FROM claims WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM claims WHERE until < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED
))
"""


async def prunable(
    pool: PostgresPool, *, ended_before: datetime, after: str, limit: int
) -> list[str]:
    if limit <= 0:
        return []

    async def op(conn: Connection) -> list[str]:
        return [str(row["id"]) for row in await conn.fetch(PRUNABLE, ended_before, after, limit)]

    return await pool.run(op, idempotent=True)


async def prune_execution(
    pool: PostgresPool,
    execution_id: str,
    *,
    ended_before: datetime,
    freeze: Callable[[], Awaitable[object]],
    batch: int,
    dry_run: bool,
) -> PruneCounts:
    """Prune one execution; ``freeze`` freezes its counters (the store's own ``freeze``,
    which knows where counters live), before anything is deleted."""
    check_prune_batch(batch)

    async def eligible(conn: Connection) -> bool:
        return await conn.fetchval(ELIGIBLE, ended_before, execution_id) is not None

    if not await pool.run(eligible, idempotent=True):
        return PruneCounts()
    if dry_run:

        async def count(conn: Connection) -> PruneCounts:
            row = await conn.fetchrow(COUNT, execution_id)
            assert row is not None  # a SELECT of subqueries has one row
            return _touched(PruneCounts(**dict(row)))

        return await pool.run(count, idempotent=True)

    await freeze()  # False when frozen already (a settled cancel, an earlier prune)
    counts = PruneCounts(
        tasks=await _in_batches(pool, DELETE_TASKS, execution_id, batch),
        part_outputs=await _in_batches(pool, DELETE_PARTS, execution_id, batch),
        sessions=await _delete(pool, DELETE_SESSION, execution_id),
        webhooks=await _delete(pool, DELETE_WEBHOOK, execution_id),
    )
    return _touched(counts)


async def prune_claims(
    pool: PostgresPool, *, expired_before: datetime, batch: int, dry_run: bool
) -> int:
    check_prune_batch(batch)
    if dry_run:

        async def count(conn: Connection) -> int:
            found: int = await conn.fetchval(COUNT_CLAIMS, expired_before)
            return found

        return await pool.run(count, idempotent=True)
    return await _in_batches(pool, DELETE_CLAIMS, expired_before, batch)


async def _in_batches(pool: PostgresPool, statement: str, key: object, batch: int) -> int:
    """Run a batched delete until a statement finds fewer than ``batch`` rows it may take;
    the rows deleted."""
    total = 0
    while True:
        deleted = await _delete(pool, statement, key, batch)
        total += deleted
        if deleted < batch:
            return total


async def _delete(pool: PostgresPool, statement: str, *args: object) -> int:
    async def op(conn: Connection) -> int:
        status: str = await conn.execute(statement, *args)  # "DELETE <n>"
        return int(status.rsplit(" ", 1)[-1])

    # Idempotent in effect: run again after a lost commit, it deletes what is left.
    return await pool.run(op, idempotent=True)


def _touched(counts: PruneCounts) -> PruneCounts:
    """``counts`` with ``executions`` 1 when any row was found, else all zero."""
    if counts.rows == 0:
        return PruneCounts()
    return counts + PruneCounts(executions=1)
