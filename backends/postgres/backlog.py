"""The backlog of running executions in SQL (``TaskLedger.backlog``), for the autoscaler
and the dashboards (orchestrator/metrics.py reads it every few seconds, from one process).

Queued tasks (registered, released, unfinished) and the oldest of them come from the rows of
``tasks`` themselves, through the partial index ``tasks_queued`` (migration 0012), which
holds exactly those rows: the read costs what an execution has queued, which its queue
window bounds (TRAWL_QUEUE_WINDOW, 1000 by default), never what it has finished. The
running executions come from the partial index ``executions_running``. Held tasks (behind
the window) are what remains unfinished: ``progress()``'s published minus finished minus
queued, read per running execution through the ledger's own counters rather than by
counting held rows, so their number costs nothing however many are held.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

# One statement, one snapshot: each running execution with its queued tasks and the
# registration time of the oldest (NULL when none is queued).
QUEUED = """
SELECT e.id, q.queued, q.oldest
FROM executions e
CROSS JOIN LATERAL (
    SELECT count(*) AS queued, min(t.registered_at) AS oldest
    FROM tasks t
    WHERE t.execution_id = e.id AND t.outcome IS NULL AND NOT t.held
) AS q
WHERE e.status = 'running'
ORDER BY e.id
"""


async def queued(conn: Connection) -> list[tuple[str, int, datetime | None]]:
    """(execution id, queued tasks, oldest queued registration) per running execution."""
    rows = await conn.fetch(QUEUED)
    return [(str(row["id"]), int(row["queued"]), row["oldest"]) for row in rows]
