"""The task counters in SQL: add, remove and finish tasks in batches, release held ones.

The rows of ``tasks`` are the truth: a key is registered once (its row), finished once (its
``outcome`` set WHERE it IS NULL). The counters say what those rows add up to and are added
to in the same transaction, in the writer's ``CounterTarget`` (``counters``): a shard row
of the execution, or its one ``task_counters`` row. Writers of one execution therefore meet
only on the task rows they share, which they lock in one order, by key hash: two batches
wait for each other only over the keys they have in common, and cannot deadlock.

A finish runs in one transaction: it enters its shard (``counters.enter_shard``, the lock a
freeze waits for), claims its keys (``_CLAIM``: locks the registered ones, registers the
others, all in key-hash order), then counts (``_finish_sql``) in a statement of its own:
that statement's snapshot is taken after the locks were granted, so it sees each claimed
row as the last writer left it, and nobody else can change them until the commit. Only rows
still unfinished count, so a key's first finish counts once however many workers finish it
at once.

Registration takes the execution's row lock only when a bound applies (``max_total``, or a
window and a payload: a task that could be held), in the one statement that inserts (see
``_CENTRAL``); a release of held tasks likewise. See ``counters`` for why finishes running
meanwhile cannot make a bound overshoot.

Keys are indexed by their SHA-256 (URLs can outgrow a btree entry), computed in SQL.
Parameters are text, text[] or JSON only (and scalars): for other array types asyncpg would
first look the type up with a session-level ``SET jit``, which through PgBouncer outside a
transaction lands on whichever server connection is at hand.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from backends.errors import RetryableError
from backends.postgres import counters, warning_examples
from backends.postgres.counters import CounterTarget, sums
from backends.state import Progress, Registered, TaskResult

if TYPE_CHECKING:
    from asyncpg import Record

    from backends.postgres.pool import Connection


ONE_ROW = CounterTarget(None)  # the execution's own row, where bounded writes count

# The execution's row, locked by the statement that reads it (FOR UPDATE): the latest
# version, whatever the statement's snapshot. A bounded registration or a release reads the
# totals that count against its bound from it (they are the only writers that raise them
# against a bound, and they take turns on it), the shards' from its snapshot (what changed
# there since cannot push a bound past its limit, see ``counters``), and writes its own
# counts to it.
_CENTRAL = """
central AS (
    SELECT published, queued, held, frozen_at IS NOT NULL AS frozen
    FROM task_counters WHERE execution_id = $1
    FOR UPDATE
),
sums AS (
    SELECT c.published + s.published AS published, c.queued + s.queued AS queued,
        c.held + s.held AS held, c.frozen
    FROM central c, (
        SELECT coalesce(sum(published), 0) AS published, coalesce(sum(queued), 0) AS queued,
            coalesce(sum(held), 0) AS held
        FROM task_counter_shards WHERE execution_id = $1
    ) AS s
)"""

# A shard writer's totals: its snapshot of every row (it has entered its shard first, so it
# knows the counters are not frozen).
_SNAPSHOT = f"""
sums AS (SELECT u.*, false AS frozen FROM ({sums("published", "queued", "held")}) AS u)"""


@functools.cache
def _add_sql(target: CounterTarget) -> str:
    """$2 keys, $3 max_total (0: none), $4 the encoded tasks (shorter than $2, e.g. empty:
    NULL for the rest), $5 now, $6 the window (0: none; new keys with a payload beyond it
    are held). Returns each key to publish or newly held, in input order, with its held
    flag; nothing when the counters are frozen. New rows are inserted in key-hash order; a
    key another writer registers or finishes meanwhile is theirs (ON CONFLICT DO NOTHING).

    The execution's row as the target (``target.single``: every registration of the
    one-row mode, and a bounded one of the shard mode) makes it one statement that locks
    that row (_CENTRAL): the lock is held only from there to the commit, with no round trip
    to the client in between. It returns a single row of NULLs when the execution has no
    such row yet."""
    return f"""
WITH {_CENTRAL if target.single else _SNAPSHOT},
input AS (
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
    WHERE t.execution_id = $1 AND t.key_hash = ANY(ARRAY(SELECT hash FROM input))
),
fresh AS (
    SELECT i.key, i.hash, i.payload, i.ord FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.key_hash = i.hash)
      AND (SELECT NOT frozen FROM sums)
    ORDER BY i.ord
    LIMIT CASE WHEN $3::bigint > 0
        THEN greatest($3::bigint - (SELECT published FROM sums), 0) END
),
ranked AS (
    SELECT f.key, f.hash, f.payload,
        coalesce(f.payload IS NOT NULL AND $6::bigint > 0 AND row_number() OVER (ORDER BY f.ord)
                 > greatest($6::bigint - greatest((SELECT queued FROM sums), 0), 0),
                 false) AS held
    FROM fresh f
),
inserted AS (
    INSERT INTO tasks (execution_id, key_hash, key, task, registered_at, held)
    SELECT $1, hash, key, payload, $5::timestamptz, held FROM ranked ORDER BY hash
    ON CONFLICT (execution_id, key_hash) DO NOTHING
    RETURNING key_hash, held
),
deltas AS (
    SELECT count(*) > 0 AS changed, count(*) AS published,
        count(*) FILTER (WHERE NOT n.held) AS queued, count(*) FILTER (WHERE n.held) AS held
    FROM inserted n
),
totals AS ({target.bump(("published", "queued", "held"))})
SELECT r.key, r.held FROM (
    SELECT i.key, n.held IS TRUE AS held, i.ord FROM input i
    LEFT JOIN inserted n ON n.key_hash = i.hash
    WHERE (SELECT NOT frozen FROM sums) AND (
        n.key_hash IS NOT NULL
        OR i.hash IN (SELECT key_hash FROM known WHERE NOT finished AND NOT held))
    UNION ALL
    SELECT NULL, NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM sums)
) AS r
ORDER BY r.ord
"""


@functools.cache
def _remove_sql(target: CounterTarget) -> str:
    """$2 keys: the unfinished ones are deleted (locked in key-hash order first; a row a
    finish committed meanwhile no longer matches)."""
    return f"""
WITH doomed AS (
    SELECT key_hash FROM tasks
    WHERE execution_id = $1 AND outcome IS NULL
      AND key_hash = ANY(ARRAY(SELECT sha256(convert_to(k, 'UTF8')) FROM unnest($2::text[]) AS k))
    ORDER BY key_hash
    FOR UPDATE
),
removed AS (
    DELETE FROM tasks t
    WHERE t.execution_id = $1 AND t.key_hash = ANY(ARRAY(SELECT key_hash FROM doomed))
    RETURNING t.key_hash, t.held
),
deltas AS (
    SELECT count(*) > 0 AS changed, -count(*) AS published,
        -count(*) FILTER (WHERE NOT r.held) AS queued, -count(*) FILTER (WHERE r.held) AS held
    FROM removed r
),
totals AS ({target.bump(("published", "queued", "held"))})
SELECT count(*) FROM removed
"""


# $2 keys. Locks the rows of those registered (finished or not) in key-hash order, inserts
# the others unfinished, in key-hash order too, and says for each distinct key (by its first
# position, 1-based): 'new' (inserted here), 'open' (registered, unfinished), 'done'
# (finished before) or 'missing': another transaction inserted it after this statement
# began, so it is neither locked nor inserted here, and is to be claimed again.
_CLAIM = """
WITH input AS (
    SELECT DISTINCT ON (i.hash) i.key, i.hash, i.ord
    FROM (
        SELECT k AS key, sha256(convert_to(k, 'UTF8')) AS hash, ord
        FROM unnest($2::text[]) WITH ORDINALITY AS u(k, ord)
    ) AS i
    ORDER BY i.hash, i.ord
),
locked AS (
    SELECT t.key_hash, t.outcome IS NULL AS open FROM tasks t
    WHERE t.execution_id = $1 AND t.key_hash = ANY(ARRAY(SELECT hash FROM input))
    ORDER BY t.key_hash
    FOR UPDATE
),
created AS (
    INSERT INTO tasks (execution_id, key_hash, key)
    SELECT $1, i.hash, i.key FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.key_hash = i.hash)
    ORDER BY i.hash
    ON CONFLICT (execution_id, key_hash) DO NOTHING
    RETURNING key_hash
)
SELECT i.ord,
    CASE WHEN c.key_hash IS NOT NULL THEN 'new'
         WHEN l.key_hash IS NULL THEN 'missing'
         WHEN l.open THEN 'open'
         ELSE 'done' END AS state
FROM input i
LEFT JOIN locked l ON l.key_hash = i.hash
LEFT JOIN created c ON c.key_hash = i.hash
"""

CLAIM_ROUNDS = 8


@functools.cache
def _finish_sql(target: CounterTarget) -> str:
    """$2 the results as a JSON array of TaskResults, $3 when they finished, $4 the
    positions (1-based, as text) of the results whose key the claim registered. Every key
    of the batch is claimed (locked or inserted by this transaction); within the batch the
    first result of a key stands, as it would had they come one by one."""
    tallies = """
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
        FROM counted, json_each_text(counted.funnel) AS f"""
    totals = target.bump(
        ("published", "finished", "records", "queued", "held"), ("last_finished_at",)
    )
    return f"""
WITH batch AS (
    SELECT DISTINCT ON (r.hash) r.*
    FROM (
        SELECT r.key, sha256(convert_to(r.key, 'UTF8')) AS hash, r.url, r.phase,
            coalesce(r.marker, '') AS marker, r.outcome, r.attempt,
            coalesce(r.error_class, 'error') AS error_class,
            coalesce(r.error_message, '') AS message, r.records, r.warnings,
            coalesce(r.funnel, '{{}}') AS funnel, r.ord
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
open AS (
    SELECT key_hash, held FROM tasks
    WHERE execution_id = $1 AND outcome IS NULL AND key_hash = ANY(ARRAY(SELECT hash FROM batch))
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
    SELECT b.*, b.ord IN (SELECT p::bigint FROM unnest($4::text[]) AS p) AS unregistered,
        EXISTS (SELECT 1 FROM open o WHERE o.key_hash = b.hash AND o.held) AS was_held
    FROM batch b
    WHERE b.hash IN (SELECT key_hash FROM finished)
),
failed AS (
    INSERT INTO failures (execution_id, key, url, phase, error_class, message, attempt, at)
    SELECT $1, key, url, phase, error_class, message, attempt, $3::timestamptz
    FROM counted WHERE outcome = 'failed'
    ORDER BY ord
),
dimensions AS (
    SELECT d.dimension, d.name, d.outcome, sum(d.n)::bigint AS n
    FROM ({tallies}
    ) AS d
    GROUP BY d.dimension, d.name, d.outcome
),
tallied AS ({target.tally("dimensions")}),
deltas AS (
    SELECT count(*) > 0 AS changed,
        count(*) FILTER (WHERE unregistered) AS published,
        count(*) AS finished,
        coalesce(sum(records), 0)::bigint AS records,
        -count(*) FILTER (WHERE NOT unregistered AND NOT was_held) AS queued,
        -count(*) FILTER (WHERE was_held) AS held,
        $3::timestamptz AS last_finished_at
    FROM counted
),
totals AS ({totals})
SELECT count(*) FROM counted
"""


# Whether a release could do anything, read without a lock (most flushes find nothing held).
_WINDOW = f"""
SELECT s.queued, s.held,
    EXISTS (SELECT 1 FROM task_counters c WHERE c.execution_id = $1 AND c.frozen_at IS NOT NULL)
    AS frozen
FROM ({sums("queued", "held")}) AS s
"""


# $2 the window (0: none, release every held task), $3 now. One statement that locks the
# execution's row (_CENTRAL) and writes the counts there; a held row a finish is writing is
# skipped (the finish takes it out of the held ones).
_RELEASE = f"""
WITH {_CENTRAL},
room AS (
    SELECT CASE WHEN frozen THEN 0
                WHEN $2::bigint > 0 THEN least($2::bigint - greatest(queued, 0), held)
                ELSE held END AS n
    FROM sums
),
picked AS (
    SELECT key_hash, registered_at FROM tasks
    WHERE execution_id = $1 AND held
    ORDER BY registered_at, key_hash
    LIMIT greatest(coalesce((SELECT n FROM room), 0), 0)
    FOR UPDATE SKIP LOCKED
),
released AS (
    UPDATE tasks t SET held = false, registered_at = $3::timestamptz
    WHERE t.execution_id = $1 AND t.key_hash = ANY(ARRAY(SELECT key_hash FROM picked))
    RETURNING t.task, t.key_hash
),
deltas AS (
    SELECT count(*) > 0 AS changed, count(*) AS queued, -count(*) AS held FROM released
),
totals AS ({ONE_ROW.bump(("queued", "held"))})
SELECT r.task FROM released r JOIN picked p ON p.key_hash = r.key_hash
ORDER BY p.registered_at, p.key_hash
"""


_results_encoder = msgspec.json.Encoder()


async def add(
    conn: Connection,
    target: CounterTarget,
    execution_id: str,
    keys: Sequence[str],
    max_total: int,
    *,
    payloads: Sequence[str] | None,
    at: datetime,
    window: int = 0,
) -> Registered:
    args = (execution_id, list(keys), max(max_total, 0), list(payloads or ()), at, max(window, 0))
    if (
        target.single
        or max_total > 0
        or (window > 0 and any(p is not None for p in payloads or ()))
    ):
        # A bound applies (or the one-row mode): one statement on the execution's row.
        rows = await conn.fetch(_add_sql(ONE_ROW), *args)
        if rows and rows[0][0] is None:  # the execution has no row yet: create it, once
            await conn.execute(counters.OPEN_CENTRAL, execution_id)
            rows = await conn.fetch(_add_sql(ONE_ROW), *args)
            assert not rows or rows[0][0] is not None  # rows are never deleted
    else:
        async with conn.transaction():
            if await counters.enter_shard(conn, target, execution_id):
                return Registered()  # frozen
            rows = await conn.fetch(_add_sql(target), *args)
    return Registered(
        publish=[row[0] for row in rows if not row[1]],
        held=[row[0] for row in rows if row[1]],
    )


async def release(conn: Connection, execution_id: str, window: int, at: datetime) -> list[str]:
    """The payloads of held tasks released into the window (see StateStore.release_tasks)."""

    def room(row: Record | None) -> int:
        if row is None or row["frozen"] or row["held"] <= 0:
            return 0
        return int(row["held"]) if window <= 0 else min(window - max(row["queued"], 0), row["held"])

    if room(await conn.fetchrow(_WINDOW, execution_id)) <= 0:
        return []
    rows = await conn.fetch(_RELEASE, execution_id, max(window, 0), at)
    return [row[0] for row in rows]


async def remove(
    conn: Connection, target: CounterTarget, execution_id: str, keys: Sequence[str]
) -> int:
    removed: int
    if target.single:
        async with conn.transaction():
            # Created if missing: shard writers may have registered the execution's tasks.
            await counters.lock_central(conn, execution_id)
            removed = await conn.fetchval(_remove_sql(target), execution_id, list(keys))
        return removed
    removed = await conn.fetchval(_remove_sql(target), execution_id, list(keys))
    return removed


async def finish(
    conn: Connection,
    target: CounterTarget,
    execution_id: str,
    results: Sequence[TaskResult],
    at: datetime,
) -> int:
    """Count ``results`` (the first finish of each key), with the warning examples of those
    that counted."""
    batch = _results_encoder.encode(results).decode()
    if "\\u0000" in batch:
        results = [_without_nul(r) for r in results]
        batch = _results_encoder.encode(results).decode()
    async with conn.transaction():
        if target.single:
            frozen = await counters.lock_central(conn, execution_id)
        else:
            frozen = await counters.enter_shard(conn, target, execution_id)
        if frozen:
            return 0  # the execution ended and its counters were frozen: nothing counts
        claimed = await _claim(conn, execution_id, [r.key for r in results])
        if not claimed:
            return 0  # every key had finished before: a redelivery
        fresh = [str(position) for position, new in claimed.items() if new]
        counted: int = await conn.fetchval(_finish_sql(target), execution_id, batch, at, fresh)
        if any(results[position - 1].warning_fields for position in claimed):
            firsts = [results[position - 1] for position in sorted(claimed)]
            examples = warning_examples.summarize(firsts)
            await warning_examples.record(conn, target, execution_id, examples)
    return counted


async def _claim(conn: Connection, execution_id: str, keys: Sequence[str]) -> dict[int, bool]:
    """Lock or register every key (see ``_CLAIM``); of the distinct keys that will count
    (unfinished), their first position in ``keys`` (1-based) -> registered by this claim."""
    claimed: dict[int, bool] = {}
    pending = list(range(len(keys)))
    for _ in range(CLAIM_ROUNDS):
        missing: list[int] = []
        for row in await conn.fetch(_CLAIM, execution_id, [keys[i] for i in pending]):
            index = pending[row["ord"] - 1]
            if row["state"] == "missing":
                missing.append(index)
            elif row["state"] != "done":
                claimed[index + 1] = row["state"] == "new"
        if not missing:
            return claimed
        pending = missing
    # Each round sees the rows the one before found being inserted: only rows inserted and
    # deleted again in between, round after round, get here.
    raise RetryableError(
        f"finishing tasks of {execution_id}: {len(pending)} key(s) kept being registered "
        "and removed meanwhile",
        error_class="database_conflict",
    )


def _without_nul(result: TaskResult) -> TaskResult:
    """Postgres text cannot hold NUL, and an error message taken from a page can."""
    changes = {
        name: value.replace("\x00", "")
        for name in result.__struct_fields__
        if isinstance(value := getattr(result, name), str) and "\x00" in value
    }
    return msgspec.structs.replace(result, **changes) if changes else result


async def progress(conn: Connection, execution_id: str) -> Progress:
    return await counters.progress(conn, execution_id)
