"""Warning examples in Postgres: counts and a few URLs per (execution, kind, phase, field).

They follow the counters' rule that only the first finish of a task counts: under the lock
on the execution's ``task_counters`` row (the lock every task write takes first), the keys
not finished yet are read before the finish and their examples recorded after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from backends.state import MAX_WARNING_EXAMPLES, TaskResult, WarningExample

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

# Locks the execution's counters row, creating it, as every task write does first.
LOCK = """
INSERT INTO task_counters AS c (execution_id) VALUES ($1)
ON CONFLICT (execution_id) DO UPDATE SET published = c.published
"""

UNFINISHED = """
SELECT k FROM unnest($2::text[]) AS k
WHERE NOT EXISTS (
    SELECT 1 FROM tasks t
    WHERE t.execution_id = $1 AND t.key_hash = sha256(convert_to(k, 'UTF8'))
      AND t.outcome IS NOT NULL
)
"""

# $2: a JSON array of {kind, phase, field, count, urls}. URLs are kept in the order first
# seen, each once, at most $3.
_RECORD = """
INSERT INTO warning_examples AS w (execution_id, kind, phase, field, count, urls)
SELECT $1, e.kind, e.phase, e.field, e.count, e.urls[1:$3]
FROM json_to_recordset($2::json) AS e(kind text, phase text, field text, count bigint,
                                      urls text[])
ORDER BY e.kind, e.phase, e.field
ON CONFLICT (execution_id, kind, phase, field) DO UPDATE SET
    count = w.count + excluded.count,
    urls = CASE WHEN cardinality(w.urls) >= $3 THEN w.urls ELSE ARRAY(
        SELECT u FROM unnest(w.urls || excluded.urls) WITH ORDINALITY AS x(u, ord)
        GROUP BY u ORDER BY min(ord) LIMIT $3
    ) END
"""

_READ = """
SELECT kind, phase, field, count, urls FROM warning_examples
WHERE execution_id = $1 ORDER BY kind, phase, field
"""

_encoder = msgspec.json.Encoder()


def summarize(results: Sequence[TaskResult]) -> list[WarningExample]:
    """The examples a batch of (counted) results adds."""
    found: dict[tuple[str, str, str], tuple[list[int], list[str]]] = {}
    for result in results:
        for key, count in result.warning_fields.items():
            kind, _, field = key.partition("|")
            total, urls = found.setdefault((kind, result.phase, field), ([0], []))
            total[0] += count
            if len(urls) < MAX_WARNING_EXAMPLES and result.url not in urls:
                urls.append(result.url)
    return [
        WarningExample(kind=kind, phase=phase, field=field, count=total[0], urls=urls)
        for (kind, phase, field), (total, urls) in sorted(found.items())
    ]


async def unfinished(conn: Connection, execution_id: str, keys: Sequence[str]) -> set[str]:
    """Of ``keys``, those not finished yet; call with the counters row locked (LOCK)."""
    rows = await conn.fetch(UNFINISHED, execution_id, list(keys))
    return {row[0] for row in rows}


async def record(conn: Connection, execution_id: str, examples: Sequence[WarningExample]) -> None:
    if examples:
        batch = _encoder.encode(examples).decode().replace("\\u0000", "")
        await conn.execute(_RECORD, execution_id, batch, MAX_WARNING_EXAMPLES)


async def read(conn: Connection, execution_id: str) -> list[WarningExample]:
    return [
        WarningExample(
            kind=row["kind"],
            phase=row["phase"],
            field=row["field"],
            count=row["count"],
            urls=list(row["urls"]),
        )
        for row in await conn.fetch(_READ, execution_id)
    ]
