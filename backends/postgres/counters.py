"""Where an execution's counters live, and how they are read.

Before migration 0011 every write of an execution's tasks locked its one ``task_counters``
row and added to it: every sink flush of every worker waited for the one before it. Now a
store adds to one of up to ``MAX_COUNTER_SHARDS`` shard rows of the execution
(``task_counter_shards``, ``task_count_shards``, ``warning_example_shards``): its
``CounterTarget``, one per process, picked at random among ``TRAWL_COUNTER_SHARDS``. Readers
sum the execution's ``task_counters`` row (and ``task_counts``) and its shards, in one
statement, so one snapshot: the totals agree with each other whatever writers are doing.

What still takes the execution's ``task_counters`` row lock: registrations that a bound
applies to (``max_total``, or a queue window and a task that could be held), releases of
held tasks, and a freeze. Those bounds need the totals of every writer at once. Such a
registration or release is one statement that locks the row FOR UPDATE (so it reads the
row's latest version whatever its snapshot), adds the shards' totals from its snapshot, and
writes its own counts to the row (``tasks._CENTRAL``): only these writers raise
``published`` against a bound or ``queued``, and they take turns; a finish or a removal
only lowers them (or registers a stray key, which never counted against ``max_total``), so
a bound read while finishes run is at worst conservative, never overshot.

Freezing (``reconcile.freeze``) must stop every writer, so a writer that takes no
``task_counters`` lock takes a KEY SHARE lock on its own shard row first (``enter_shard``),
and reads ``frozen_at`` there and on the execution's row. Writers of one shard do not wait
for each other on it (only for the last statement of a write, which adds to the row); a
freeze marks the execution's row, then locks every shard row FOR UPDATE, which waits for
every writer in progress, and marks them too. A process's first write to an execution
creates its shard row under a SHARE lock on the execution's row, so a freeze cannot miss a
shard row being created.

With ``shards`` = 1 the target is the execution's ``task_counters`` row itself, locked by
every write as before 0011: what a deployment runs while workers of the previous version,
which read only that row, are still about (docs/operations.md, "Counters during a rollout").

The shard number is part of the SQL text (an int checked here), not a parameter: statements
are not cached anyway (PgBouncer's transaction mode), and so each target's statements are
built once (``functools.cache``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from backends.errors import InvalidInputError
from backends.state import Activity, Progress

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

# The shard rows an execution may have (migration 0011 checks it too): a freeze creates
# them all, and a read sums them all.
MAX_COUNTER_SHARDS = 64
DEFAULT_COUNTER_SHARDS = 16


@dataclass(frozen=True)
class CounterTarget:
    """Where one store's writes add up: shard ``shard`` of each execution's counters, or
    (``shard`` None) the execution's ``task_counters`` row, locked by every write."""

    shard: int | None

    @classmethod
    def pick(cls, shards: int, shard: int | None = None) -> CounterTarget:
        """A target among ``shards``: ``shard`` if given, else one at random."""
        if not 1 <= shards <= MAX_COUNTER_SHARDS:
            raise InvalidInputError(
                f"counter shards must be between 1 and {MAX_COUNTER_SHARDS}, not {shards}"
            )
        if shards == 1:
            return cls(None)
        if shard is None:
            shard = random.randrange(shards)  # spreading load, not a secret
        elif not 0 <= shard < shards:
            raise InvalidInputError(f"counter shard {shard} is not among 0 .. {shards - 1}")
        return cls(shard)

    @property
    def single(self) -> bool:
        """The execution's one row, as before 0011."""
        return self.shard is None

    def bump(self, adds: Sequence[str], latest: Sequence[str] = ()) -> str:
        """The body of a data-modifying CTE adding the one row of CTE ``deltas`` to this
        target's counters row when ``deltas.changed``: the columns ``adds`` are added, the
        timestamps ``latest`` keep the newer value."""
        if self.shard is None:
            sets = [f"{c} = c.{c} + d.{c}" for c in adds]
            sets += [f"{c} = greatest(c.{c}, d.{c})" for c in latest]
            return (
                f"UPDATE task_counters AS c SET {', '.join(sets)} FROM deltas AS d"
                " WHERE c.execution_id = $1 AND d.changed"
            )
        columns = [*adds, *latest]
        sets = [f"{c} = c.{c} + excluded.{c}" for c in adds]
        sets += [f"{c} = greatest(c.{c}, excluded.{c})" for c in latest]
        return (
            f"INSERT INTO task_counter_shards AS c (execution_id, shard, {', '.join(columns)})"
            f" SELECT $1, {self.shard}, {', '.join(f'd.{c}' for c in columns)}"
            " FROM deltas AS d WHERE d.changed"
            f" ON CONFLICT (execution_id, shard) DO UPDATE SET {', '.join(sets)}"
        )

    def tally(self, source: str) -> str:
        """The body of a data-modifying CTE adding the counts of ``source`` (columns
        dimension, name, outcome, n) to this target's counts, in key order (so two writers
        of one shard take the row locks in the same order)."""
        if self.shard is None:
            table, shard_column, shard_value, key_shard = "task_counts", "", "", ""
        else:
            table, shard_column = "task_count_shards", "shard, "
            shard_value, key_shard = f"{self.shard}, ", ", shard"
        return (
            f"INSERT INTO {table} AS c"
            f" (execution_id, {shard_column}dimension, name, outcome, count)"
            f" SELECT $1, {shard_value}s.dimension, s.name, s.outcome, s.n FROM {source} AS s"
            " ORDER BY s.dimension, s.name, s.outcome"
            f" ON CONFLICT (execution_id, dimension, name, outcome{key_shard})"
            " DO UPDATE SET count = c.count + excluded.count"
        )


def sums(*columns: str) -> str:
    """A query of one row: ``columns`` of the execution ($1) summed over its
    ``task_counters`` row and its shard rows (0 when it has none)."""
    listed = ", ".join(columns)
    summed = ", ".join(f"coalesce(sum(u.{c}), 0)::bigint AS {c}" for c in columns)
    return (
        f"SELECT {summed} FROM ("
        f"SELECT {listed} FROM task_counters WHERE execution_id = $1"
        f" UNION ALL SELECT {listed} FROM task_counter_shards WHERE execution_id = $1"
        ") AS u"
    )


_CENTRAL_FROZEN = (
    "EXISTS (SELECT 1 FROM task_counters c WHERE c.execution_id = $1 AND c.frozen_at IS NOT NULL)"
)

# Locks the execution's row FOR UPDATE: what the one-row target's finishes, removals and
# leases take first. No new row version, unlike an upsert.
_LOCK_CENTRAL = (
    "SELECT frozen_at IS NOT NULL AS frozen FROM task_counters WHERE execution_id = $1 FOR UPDATE"
)
OPEN_CENTRAL = "INSERT INTO task_counters (execution_id) VALUES ($1) ON CONFLICT DO NOTHING"


async def lock_central(conn: Connection, execution_id: str, *, create: bool = True) -> bool | None:
    """Lock the execution's ``task_counters`` row (creating it with ``create``) until the
    transaction ends; whether its counters are frozen, None when it has no row."""
    frozen: bool | None = await conn.fetchval(_LOCK_CENTRAL, execution_id)
    if frozen is None and create:
        await conn.execute(OPEN_CENTRAL, execution_id)
        frozen = await conn.fetchval(_LOCK_CENTRAL, execution_id)
        assert frozen is not None  # the row exists now, and rows are never deleted
    return frozen


def _enter_sql(shard: int) -> str:
    return f"""
SELECT s.frozen_at IS NOT NULL OR {_CENTRAL_FROZEN} AS frozen FROM (
    SELECT frozen_at FROM task_counter_shards
    WHERE execution_id = $1 AND shard = {shard}
    FOR KEY SHARE
) AS s
"""


# A process's first write to an execution creates its shard row under a SHARE lock on the
# execution's row (created too, if need be), which a freeze's lock on that row waits for: a
# freeze that came first is seen (a locking read sees the row's latest version), and one
# that comes later finds the new shard row and locks it like the others.
_SHARE_CENTRAL = (
    "SELECT frozen_at IS NOT NULL AS frozen FROM task_counters WHERE execution_id = $1 FOR SHARE"
)


def _open_shard_sql(shard: int) -> str:
    return (
        f"INSERT INTO task_counter_shards (execution_id, shard) VALUES ($1, {shard})"
        " ON CONFLICT DO NOTHING"
    )


async def enter_shard(conn: Connection, target: CounterTarget, execution_id: str) -> bool:
    """Take the KEY SHARE lock on the target's shard row of the execution until the
    transaction ends, so that a freeze waits for this write (creating the row, see
    _SHARE_CENTRAL); whether the execution's counters are frozen."""
    assert target.shard is not None
    frozen: bool | None = await conn.fetchval(_enter_sql(target.shard), execution_id)
    if frozen is not None:
        return frozen
    await conn.execute(OPEN_CENTRAL, execution_id)
    frozen = await conn.fetchval(_SHARE_CENTRAL, execution_id)
    assert frozen is not None  # the row exists now, and such rows are never deleted
    await conn.execute(_open_shard_sql(target.shard), execution_id)
    return frozen


# One statement, so one snapshot: the totals and the counts agree.
_PROGRESS = f"""
SELECT t.published, t.finished, t.records,
    (SELECT coalesce(json_agg(json_build_array(g.dimension, g.name, g.outcome, g.n)), '[]')
     FROM (
        SELECT k.dimension, k.name, k.outcome, sum(k.count)::bigint AS n FROM (
            SELECT dimension, name, outcome, count FROM task_counts WHERE execution_id = $1
            UNION ALL
            SELECT dimension, name, outcome, count FROM task_count_shards
            WHERE execution_id = $1
        ) AS k
        GROUP BY k.dimension, k.name, k.outcome
     ) AS g)::text AS counts
FROM ({sums("published", "finished", "records")}) AS t
"""

_counts_decoder = msgspec.json.Decoder(list[tuple[str, str, str, int]])


async def progress(conn: Connection, execution_id: str) -> Progress:
    """The execution's counters: its row and its shards, summed."""
    row = await conn.fetchrow(_PROGRESS, execution_id)
    assert row is not None  # an aggregate without GROUP BY has one row
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


_ACTIVITY = """
SELECT max(u.last_finished_at) AS last_finished_at, max(u.last_leased_at) AS last_leased_at,
    (SELECT frozen_at FROM task_counters WHERE execution_id = $1) AS frozen_at
FROM (
    SELECT last_finished_at, last_leased_at FROM task_counters WHERE execution_id = $1
    UNION ALL
    SELECT last_finished_at, last_leased_at FROM task_counter_shards WHERE execution_id = $1
) AS u
"""


async def activity(conn: Connection, execution_id: str) -> Activity:
    """The newest finish and lease over the execution's row and shards; when it was frozen
    (a freeze always marks the execution's row)."""
    row = await conn.fetchrow(_ACTIVITY, execution_id)
    assert row is not None  # an aggregate without GROUP BY has one row
    return Activity(**dict(row))
