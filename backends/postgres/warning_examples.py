"""Warning examples in Postgres: counts and a few URLs per (execution, kind, phase, field).

They follow the counters' rule that only the first finish of a task counts: ``tasks.finish``
records the examples of the results its claim found unfinished, in the same transaction,
into the writer's target (``counters.CounterTarget``): a shard's rows
(``warning_example_shards``) or the execution's own (``warning_examples``). A read merges
them: counts summed, URLs each once, the first few (the execution's own rows first, then by
shard).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from backends.postgres.counters import CounterTarget
from backends.state import MAX_WARNING_EXAMPLES, TaskResult, WarningExample

if TYPE_CHECKING:
    from backends.postgres.pool import Connection


@functools.cache
def _record_sql(target: CounterTarget) -> str:
    """$2: a JSON array of {kind, phase, field, count, urls}. URLs are kept in the order
    first seen, each once, at most $3. Rows are written in key order, so two writers of one
    target take their locks in the same order."""
    if target.shard is None:
        table, shard_column, shard_value, key_shard = "warning_examples", "", "", ""
    else:
        table, shard_column = "warning_example_shards", "shard, "
        shard_value, key_shard = f"{target.shard}, ", ", shard"
    return f"""
INSERT INTO {table} AS w (execution_id, {shard_column}kind, phase, field, count, urls)
SELECT $1, {shard_value}e.kind, e.phase, e.field, e.count, e.urls[1:$3]
FROM json_to_recordset($2::json) AS e(kind text, phase text, field text, count bigint,
                                      urls text[])
ORDER BY e.kind, e.phase, e.field
ON CONFLICT (execution_id, kind, phase, field{key_shard}) DO UPDATE SET
    count = w.count + excluded.count,
    urls = CASE WHEN cardinality(w.urls) >= $3 THEN w.urls ELSE ARRAY(
        SELECT u FROM unnest(w.urls || excluded.urls) WITH ORDINALITY AS x(u, ord)
        GROUP BY u ORDER BY min(ord) LIMIT $3
    ) END
"""


_READ = """
SELECT kind, phase, field, count, urls FROM (
    SELECT kind, phase, field, -1 AS shard, count, urls FROM warning_examples
    WHERE execution_id = $1
    UNION ALL
    SELECT kind, phase, field, shard, count, urls FROM warning_example_shards
    WHERE execution_id = $1
) AS e
ORDER BY kind, phase, field, shard
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


async def record(
    conn: Connection,
    target: CounterTarget,
    execution_id: str,
    examples: Sequence[WarningExample],
) -> None:
    if examples:
        batch = _encoder.encode(examples).decode().replace("\\u0000", "")
        await conn.execute(_record_sql(target), execution_id, batch, MAX_WARNING_EXAMPLES)


async def read(conn: Connection, execution_id: str) -> list[WarningExample]:
    merged: dict[tuple[str, str, str], tuple[list[int], list[str]]] = {}
    for row in await conn.fetch(_READ, execution_id):
        total, urls = merged.setdefault((row["kind"], row["phase"], row["field"]), ([0], []))
        total[0] += row["count"]
        for url in row["urls"]:
            if len(urls) < MAX_WARNING_EXAMPLES and url not in urls:
                urls.append(url)
    return [
        WarningExample(kind=kind, phase=phase, field=field, count=total[0], urls=urls)
        for (kind, phase, field), (total, urls) in merged.items()
    ]
