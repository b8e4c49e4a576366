"""The task counters in SQL: add, remove and finish tasks in batches, read progress.

Every operation that writes tasks runs in one transaction of two statements, whatever the
batch size: first it locks the execution's ``task_counters`` row, then one statement does
the batch with arrays (``unnest``) and data-modifying CTEs. The lock serializes the writers
of one execution, which is what makes ``max_total`` exact and the first finish of a key the
only one counted, and since every writer takes it first they cannot deadlock. The batch is a
statement of its own because a statement's snapshot is taken when it starts: one that began
before the lock was granted would not see the rows of the transaction it waited for.

Keys are indexed by their SHA-256 (URLs can outgrow a btree entry), computed in SQL.
Parameters are text, text[] or JSON only: for other array types asyncpg would first look the
type up with a session-level ``SET jit``, which through PgBouncer outside a transaction
lands on whichever server connection is at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from backends.state import Progress, Registered, TaskResult

if TYPE_CHECKING:
    from asyncpg import Record

    from backends.postgres.pool import Connection

_LOCK = "SELECT published FROM task_counters WHERE execution_id = $1 FOR UPDATE"

# Locks the row (creating it), and says whether the counters are frozen (see freeze).
_LOCK_OR_CREATE_FROZEN = """
INSERT INTO task_counters AS c (execution_id) VALUES ($1)
ON CONFLICT (execution_id) DO UPDATE SET published = c.published
RETURNING c.published, c.queued, c.frozen_at IS NOT NULL AS frozen
"""

# $2 keys, $3 how many new keys may still be registered (NULL: any), $4 the encoded tasks
# (shorter than $2, e.g. empty: NULL for the rest), $5 now, $6 how many new keys may go to
# the queue (NULL: any; the rest with a payload are held). Returns each key to publish or
# newly held, in input order, with its held flag.
_ADD = """
WITH input AS (
    SELECT DISTINCT ON (k.hash) k.key, k.hash, k.ord, k.payload
    FROM (
        SELECT key, ord, payload, sha256(convert_to(key, 'UTF8')) AS hash
        FROM unnest($2::text[], $4::text[]) WITH ORDINALITY AS k(key, payload, ord)
        WHERE key IS NOT NULL
    ) AS k
    ORDER BY k.hash, k.ord
),
known AS (
    SELECT t.key_hash, t.outcome IS NOT NULL AS finished, t.held
    FROM tasks t
    WHERE t.execution_id = $1 AND t.key_hash IN (SELECT hash FROM input)
),
fresh AS (
    SELECT i.key, i.hash, i.payload, i.ord FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.key_hash = i.hash)
    ORDER BY i.ord
    LIMIT $3::bigint
),
ranked AS (
    SELECT f.key, f.hash, f.payload,
        coalesce(f.payload IS NOT NULL AND row_number() OVER (ORDER BY f.ord) > $6::bigint,
                 false) AS held
    FROM fresh f
),
inserted AS (
    INSERT INTO tasks (execution_id, key_hash, key, task, registered_at, held)
    SELECT $1, hash, key, payload, $5::timestamptz, held FROM ranked
    RETURNING key_hash, held
),
totals AS (
    UPDATE task_counters SET
        published = published + (SELECT count(*) FROM inserted),
        queued = queued + (SELECT count(*) FROM inserted n WHERE NOT n.held),
        held = held + (SELECT count(*) FROM inserted n WHERE n.held)
    WHERE execution_id = $1 AND EXISTS (SELECT 1 FROM inserted)
)
SELECT i.key, n.held IS TRUE AS held FROM input i
LEFT JOIN inserted n ON n.key_hash = i.hash
WHERE n.key_hash IS NOT NULL
   OR i.hash IN (SELECT key_hash FROM known WHERE NOT finished AND NOT held)
ORDER BY i.ord
"""

_REMOVE = """
WITH removed AS (
    DELETE FROM tasks
    WHERE execution_id = $1 AND outcome IS NULL
      AND key_hash IN (SELECT sha256(convert_to(k, 'UTF8')) FROM unnest($2::text[]) AS k)
    RETURNING key_hash, held
),
totals AS (
    UPDATE task_counters SET
        published = published - (SELECT count(*) FROM removed),
        queued = greatest(queued - (SELECT count(*) FROM removed r WHERE NOT r.held), 0),
        held = held - (SELECT count(*) FROM removed r WHERE r.held)
    WHERE execution_id = $1 AND EXISTS (SELECT 1 FROM removed)
)
SELECT count(*) FROM removed
"""

# $2 the results as a JSON array of TaskResults, $3 when they finished. Within the batch the
# first result of a key stands, as it would had they come one by one. A key finished before
# stays as it was (the ON CONFLICT ... WHERE); one never registered is registered now, and
# counts as published.
_FINISH = """
WITH batch AS (
    SELECT DISTINCT ON (r.hash) r.*
    FROM (
        SELECT r.key, sha256(convert_to(r.key, 'UTF8')) AS hash, r.url, r.phase,
            coalesce(r.marker, '') AS marker, r.outcome, r.attempt,
            coalesce(r.error_class, 'error') AS error_class,
            coalesce(r.error_message, '') AS message, r.records, r.warnings,
            coalesce(r.funnel, '{}') AS funnel, r.ord
        FROM ROWS FROM (json_to_recordset($2::json) AS (
            key text, url text, phase text, marker text, outcome text, attempt int,
            error_class text, error_message text, records bigint, warnings json, funnel json
        )) WITH ORDINALITY AS r(
            key, url, phase, marker, outcome, attempt, error_class, error_message, records,
            warnings, funnel, ord
        )
    ) AS r
    ORDER BY r.hash, r.ord
),
known AS (
    SELECT key_hash, held FROM tasks
    WHERE execution_id = $1 AND key_hash IN (SELECT hash FROM batch)
),
finished AS (
    INSERT INTO tasks AS t (execution_id, key_hash, key, outcome)
    SELECT $1, hash, key, outcome FROM batch
    ON CONFLICT (execution_id, key_hash)
    DO UPDATE SET outcome = excluded.outcome, task = NULL, leased_until = NULL, held = false
    WHERE t.outcome IS NULL
    RETURNING t.key_hash
),
counted AS (
    SELECT b.*, NOT EXISTS (SELECT 1 FROM known WHERE known.key_hash = b.hash) AS unregistered,
        EXISTS (SELECT 1 FROM known WHERE known.key_hash = b.hash AND known.held) AS was_held
    FROM batch b
    WHERE b.hash IN (SELECT key_hash FROM finished)
),
failed AS (
    INSERT INTO failures (execution_id, key, url, phase, error_class, message, attempt, at)
    SELECT $1, key, url, phase, error_class, message, attempt, $3::timestamptz
    FROM counted WHERE outcome = 'failed'
    ORDER BY ord
),
tallied AS (
    INSERT INTO task_counts AS c (execution_id, dimension, name, outcome, count)
    SELECT $1, d.dimension, d.name, d.outcome, sum(d.n)::bigint
    FROM (
        SELECT 'outcome' AS dimension, outcome AS name, '' AS outcome, 1::bigint AS n
        FROM counted
        UNION ALL SELECT 'phase', phase, outcome, 1 FROM counted
        UNION ALL SELECT 'marker', marker, outcome, 1 FROM counted
        UNION ALL SELECT 'failure_class', error_class, '', 1 FROM counted
        WHERE outcome = 'failed'
        UNION ALL SELECT 'warning', w.key, '', w.value::bigint
        FROM counted, json_each_text(counted.warnings) AS w
        UNION ALL SELECT 'funnel', substr(f.key, strpos(f.key, '|') + 1),
            split_part(f.key, '|', 1), f.value::bigint
        FROM counted, json_each_text(counted.funnel) AS f
    ) AS d
    GROUP BY d.dimension, d.name, d.outcome
    ORDER BY d.dimension, d.name, d.outcome
    ON CONFLICT (execution_id, dimension, name, outcome)
    DO UPDATE SET count = c.count + excluded.count
),
totals AS (
    UPDATE task_counters SET
        published = published + (SELECT count(*) FROM counted WHERE unregistered),
        finished = finished + (SELECT count(*) FROM counted),
        records = records + (SELECT coalesce(sum(records), 0) FROM counted),
        queued = greatest(
            queued - (SELECT count(*) FROM counted WHERE NOT unregistered AND NOT was_held), 0
        ),
        held = held - (SELECT count(*) FROM counted WHERE was_held),
        last_finished_at = $3::timestamptz
    WHERE execution_id = $1 AND EXISTS (SELECT 1 FROM counted)
)
SELECT count(*) FROM counted
"""

# Whether a release could do anything, read without a lock (most flushes find nothing held).
_WINDOW = """
SELECT queued, held, frozen_at IS NOT NULL AS frozen FROM task_counters WHERE execution_id = $1
"""

_LOCK_WINDOW = """
SELECT queued, held, frozen_at IS NOT NULL AS frozen FROM task_counters
WHERE execution_id = $1 FOR UPDATE
"""

# $2 how many to release, $3 now.
_RELEASE = """
WITH picked AS (
    SELECT key_hash, registered_at FROM tasks
    WHERE execution_id = $1 AND held
    ORDER BY registered_at, key_hash
    LIMIT $2::bigint
),
released AS (
    UPDATE tasks t SET held = false, registered_at = $3::timestamptz
    FROM picked WHERE t.execution_id = $1 AND t.key_hash = picked.key_hash
    RETURNING t.task, t.key_hash
),
totals AS (
    UPDATE task_counters SET
        queued = queued + (SELECT count(*) FROM released),
        held = held - (SELECT count(*) FROM released)
    WHERE execution_id = $1 AND EXISTS (SELECT 1 FROM released)
)
SELECT r.task FROM released r JOIN picked p ON p.key_hash = r.key_hash
ORDER BY p.registered_at, p.key_hash
"""

# One statement, so one snapshot: the totals and the counts agree.
_PROGRESS = """
SELECT c.published, c.finished, c.records,
    (SELECT coalesce(json_agg(json_build_array(k.dimension, k.name, k.outcome, k.count)), '[]')
     FROM task_counts k WHERE k.execution_id = c.execution_id)::text AS counts
FROM task_counters c
WHERE c.execution_id = $1
"""

_counts_decoder = msgspec.json.Decoder(list[tuple[str, str, str, int]])
_results_encoder = msgspec.json.Encoder()


async def add(
    conn: Connection,
    execution_id: str,
    keys: Sequence[str],
    max_total: int,
    *,
    payloads: Sequence[str] | None,
    at: datetime,
    window: int = 0,
) -> Registered:
    async with conn.transaction():
        lock = await conn.fetchrow(_LOCK_OR_CREATE_FROZEN, execution_id)
        assert lock is not None  # an upsert with RETURNING always returns its row
        if lock["frozen"]:
            return Registered()
        published: int = lock["published"]
        room = max(max_total - published, 0) if max_total > 0 else None
        queue_room = max(window - lock["queued"], 0) if window > 0 else None
        rows = await conn.fetch(
            _ADD, execution_id, list(keys), room, list(payloads or ()), at, queue_room
        )
    return Registered(
        publish=[row[0] for row in rows if not row[1]],
        held=[row[0] for row in rows if row[1]],
    )


async def release(conn: Connection, execution_id: str, window: int, at: datetime) -> list[str]:
    """The payloads of held tasks released into the window (see StateStore.release_tasks)."""

    def room(row: Record | None) -> int:
        if row is None or row["frozen"] or row["held"] == 0:
            return 0
        return int(row["held"]) if window <= 0 else min(window - row["queued"], row["held"])

    if room(await conn.fetchrow(_WINDOW, execution_id)) <= 0:
        return []
    async with conn.transaction():
        n = room(await conn.fetchrow(_LOCK_WINDOW, execution_id))
        if n <= 0:
            return []
        rows = await conn.fetch(_RELEASE, execution_id, n, at)
    return [row[0] for row in rows]


async def remove(conn: Connection, execution_id: str, keys: Sequence[str]) -> int:
    async with conn.transaction():
        if await conn.fetchval(_LOCK, execution_id) is None:
            return 0  # no task was ever added to it
        removed: int = await conn.fetchval(_REMOVE, execution_id, list(keys))
    return removed


async def finish(
    conn: Connection, execution_id: str, results: Sequence[TaskResult], at: datetime
) -> int:
    batch = _results_encoder.encode(results).decode()
    if "\\u0000" in batch:
        batch = _results_encoder.encode([_without_nul(r) for r in results]).decode()
    async with conn.transaction():
        lock = await conn.fetchrow(_LOCK_OR_CREATE_FROZEN, execution_id)
        assert lock is not None  # an upsert with RETURNING always returns its row
        if lock["frozen"]:
            return 0  # the execution ended and its counters were frozen: nothing counts
        counted: int = await conn.fetchval(_FINISH, execution_id, batch, at)
    return counted


def _without_nul(result: TaskResult) -> TaskResult:
    """Postgres text cannot hold NUL, and an error message taken from a page can."""
    changes = {
        name: value.replace("\x00", "")
        for name in result.__struct_fields__
        if isinstance(value := getattr(result, name), str) and "\x00" in value
    }
    return msgspec.structs.replace(result, **changes) if changes else result


async def progress(conn: Connection, execution_id: str) -> Progress:
    row = await conn.fetchrow(_PROGRESS, execution_id)
    if row is None:
        return Progress()
    by_outcome: dict[str, int] = {}
    by_phase: dict[str, dict[str, int]] = {}
    by_marker: dict[str, dict[str, int]] = {}
    failures_by_class: dict[str, int] = {}
    warnings: dict[str, int] = {}
    flat = {"outcome": by_outcome, "failure_class": failures_by_class, "warning": warnings}
    funnel: dict[str, dict[str, int]] = {}
    nested = {"phase": by_phase, "marker": by_marker, "funnel": funnel}
    for dimension, name, outcome, count in _counts_decoder.decode(row["counts"]):
        if dimension in nested:
            nested[dimension].setdefault(name, {})[outcome] = count
        else:
            flat[dimension][name] = count
    return Progress(
        published=row["published"],
        finished=row["finished"],
        by_outcome=by_outcome,
        by_phase=by_phase,
        by_marker=by_marker,
        failures_by_class=failures_by_class,
        warnings=warnings,
        records=row["records"],
        funnel=funnel,
    )
