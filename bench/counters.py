"""One execution's task counters under a flood of sink flushes: results/s and flush latency
for 1, 4 and 8 concurrent writers (issue 16; results/counters.md).

    python -m bench.counters [--writers 1,4,8] [--results 40000] [--batch 256]
        [--shards N] [--window N] [--label TEXT]

Each writer is a PostgresStateStore with a pool of its own, as a worker process has, and
flushes like the sink: it registers the next batch of keys (the links of this one) and then
finishes this one, 256 results at a time. A tenth of the results finish a key a second time
(another writer's redelivery, with another outcome), as at-least-once delivery does. The
latencies are those of ``finish_tasks`` (a flush's counting) and of ``register_tasks``. With
``--window N`` the execution has a queue window (as distributed mode's default 1000): each
registration is bounded, so it takes the execution's row lock, and each flush releases held
tasks after counting, as the sink does. "Waiting for locks" is the share of the writers'
active time in Postgres spent waiting for a lock (pg_stat_activity, sampled every 5 ms): the
serialisation itself.

``--shards N`` sets TRAWL_COUNTER_SHARDS for the writers (1: the execution's single row,
locked by every write, as before migration 0011); without it the store's default is used,
which is how the code before sharding is measured: run this file from a checkout of that
commit (``git worktree add /tmp/trawl-head <commit>``, copy this file there, and run it with
``PYTHONPATH=/tmp/trawl-head``).

Postgres is the test suite's local server, reached through a PgBouncer of this run's own
(transaction mode); each writer count runs on a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from backends.postgres import PostgresStateStore
from backends.state import Execution, TaskOutcome, TaskResult
from tests.services import free_port
from tests.services.postgres import (
    HOST,
    PgBouncer,
    TestDatabase,
    create_database,
    drop_database,
)


@dataclass
class Writer:
    """One writer's flushes: how long each finish and registration took."""

    finish_s: list[float] = field(default_factory=list)
    register_s: list[float] = field(default_factory=list)
    sent: int = 0
    counted: int = 0


def key(i: int) -> str:
    return f"https://bench.test/page/{i}"


def results_for(keys: list[int], *, again: bool) -> list[TaskResult]:
    outcome: TaskOutcome = "failed" if again else "succeeded"
    return [
        TaskResult(
            key=key(i),
            url=key(i),
            phase="page" if i % 3 else "listing",
            depth=1,
            outcome=outcome,
            marker="item" if i % 2 else None,
            error_class="timeout" if again else None,
            records=0 if again else 1,
            warnings={"field_type": 1} if i % 17 == 0 else {},
            funnel={"discovered|page|item": 4, "new|page|item": 1},
        )
        for i in keys
    ]


async def write(
    store: PostgresStateStore,
    execution_id: str,
    own: list[int],
    theirs: list[int],
    *,
    batch: int,
    window: int,
) -> Writer:
    writer = Writer()
    batches = [own[b : b + batch] for b in range(0, len(own), batch)]
    others = [theirs[b : b + batch] for b in range(0, len(theirs), batch)]

    async def register(keys: list[int]) -> None:
        urls = [key(i) for i in keys]
        started = time.perf_counter()
        await store.register_tasks(execution_id, urls, payloads=urls, window=window)
        writer.register_s.append(time.perf_counter() - started)

    await register(batches[0])
    for j, keys in enumerate(batches):
        if j + 1 < len(batches):
            await register(batches[j + 1])
        results = results_for(keys, again=False)
        if j < len(others):  # a tenth: another writer's keys, finished again
            results += results_for(others[j][: max(1, batch // 10)], again=True)
        started = time.perf_counter()
        writer.sent += len(results)
        writer.counted += await store.finish_tasks(execution_id, results)
        writer.finish_s.append(time.perf_counter() - started)
        if window:  # what the sink does next: publish held tasks the flush made room for
            await store.release_tasks(execution_id, window=window)
        await store.progress(execution_id)  # the completion check after each flush
    return writer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def lock_waits(direct_dsn: str, database: str, stop: asyncio.Event) -> float:
    """The share of the writers' active time spent waiting for a lock (a row lock of
    another transaction, above all), sampled from pg_stat_activity every 5 ms."""
    conn = await asyncpg.connect(direct_dsn)
    waiting = active = 0
    try:
        while not stop.is_set():
            row = await conn.fetchrow(_ACTIVITY, database)
            assert row is not None
            waiting += row["waiting"]
            active += row["active"]
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return waiting / active if active else 0.0


_ACTIVITY = """
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting, count(*) AS active
FROM pg_stat_activity
WHERE datname = $1 AND state = 'active' AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
"""


async def one_run(
    database: TestDatabase,
    port: int,
    writers: int,
    *,
    results: int,
    batch: int,
    shards: int | None,
    window: int = 0,
) -> dict[str, Any]:
    dsn = database.dsn.replace(":6432/", f":{port}/")
    options: dict[str, Any] = {} if shards is None else {"counter_shards": shards}
    stores = [
        await PostgresStateStore.from_url(dsn, min_size=1, max_size=2, **options)
        for _ in range(writers)
    ]
    stop = asyncio.Event()
    sampler = asyncio.create_task(lock_waits(database.direct_dsn, database.name, stop))
    try:
        execution = Execution(
            id=f"bench-counters-{writers}",
            workflow="bench",
            workflow_version=1,
            created_at=datetime.now(UTC),
        )
        await stores[0].create_execution(execution)
        keys = list(range(int(results / 1.1)))
        own = [keys[w::writers] for w in range(writers)]
        started = time.perf_counter()
        done = await asyncio.gather(
            *(
                write(
                    store,
                    execution.id,
                    own[w],
                    own[(w - 1) % writers],
                    batch=batch,
                    window=window,
                )
                for w, store in enumerate(stores)
            )
        )
        elapsed = time.perf_counter() - started
        stop.set()
        waited = await sampler
        progress = await stores[0].progress(execution.id)
    finally:
        stop.set()
        await asyncio.gather(sampler, return_exceptions=True)
        for store in stores:
            await store.close()
    assert progress.finished == progress.published == len(keys), progress
    assert sum(w.counted for w in done) == len(keys)
    finishes = [s for w in done for s in w.finish_s]
    registers = [s for w in done for s in w.register_s]
    sent = sum(w.sent for w in done)
    return {
        "writers": writers,
        "results": sent,
        "seconds": round(elapsed, 2),
        "results_per_s": round(sent / elapsed),
        "flushes_per_s": round(len(finishes) / elapsed),
        "finish_p50_ms": round(statistics.median(finishes) * 1000, 1),
        "finish_p99_ms": round(percentile(finishes, 0.99) * 1000, 1),
        "register_p50_ms": round(statistics.median(registers) * 1000, 1),
        "register_p99_ms": round(percentile(registers, 0.99) * 1000, 1),
        "lock_wait_pct": round(waited * 100),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "| writers | results | s | results/s | flushes/s | finish p50 ms | finish p99 ms "
        "| register p50 ms | register p99 ms | waiting for locks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(
        head
        + [
            f"| {r['writers']} | {r['results']} | {r['seconds']} | {r['results_per_s']} "
            f"| {r['flushes_per_s']} | {r['finish_p50_ms']} | {r['finish_p99_ms']} "
            f"| {r['register_p50_ms']} | {r['register_p99_ms']} | {r['lock_wait_pct']} % |"
            for r in rows
        ]
    )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    bouncer = PgBouncer.create(free_port(HOST), pool_size=24)
    bouncer.start()
    rows = []
    try:
        for writers in [int(w) for w in args.writers.split(",")]:
            database = create_database()
            try:
                rows.append(
                    await one_run(
                        database,
                        bouncer.port,
                        writers,
                        results=args.results,
                        batch=args.batch,
                        shards=args.shards,
                        window=args.window,
                    )
                )
            finally:
                drop_database(database)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        bouncer.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", default="1,4,8", help="writer counts, comma-separated")
    parser.add_argument("--results", type=int, default=40_000, help="results per run")
    parser.add_argument("--batch", type=int, default=256, help="results per flush")
    parser.add_argument(
        "--shards", type=int, default=None, help="TRAWL_COUNTER_SHARDS (default: the store's)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="a queue window: registrations hold what does not fit, each flush releases",
    )
    parser.add_argument("--label", default="", help="a heading for the table")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    print(f"\n{args.label}\n\n{table(rows)}" if args.label else f"\n{table(rows)}")


if __name__ == "__main__":
    main()
