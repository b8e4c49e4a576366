"""Sharded task counters under load, against real Postgres through real PgBouncer.

Eight stores with pools of their own (as eight worker processes have) flush 100,000 results
into one execution as the sink does: register a batch's children, then finish the batch,
then check completion. Some keys are finished twice, by two workers with different
outcomes; some were never registered; some carry warnings and funnel counts. The counters
must come out exactly as the task rows (the truth) say, and completion must be seen by the
writer whose flush lands last, never earlier.

Also: the single-row target (TRAWL_COUNTER_SHARDS=1, what a rollout from the previous
version runs) passes the whole TaskLedger contract, and writers of both kinds side by side
(the rollout's switch-over) keep the counts exact; a freeze among eight writers stops them
all at once; and bench/counters.py still runs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import pytest

import tests.contract.test_task_ledger as ledger_contract
from backends.clock import FakeClock
from backends.postgres import PostgresStateStore
from backends.state import Execution, Progress, StateStore, TaskResult, nest_funnel
from bench.counters import one_run, table
from tests.contract.conftest import Env, fake_advance
from tests.services.postgres import (
    PGBOUNCER_PORT,
    TestDatabase,
    create_database,
    drop_database,
    empty_tables,
    postgres_database,  # noqa: F401 - fixture
    session_database,
)

pytestmark = pytest.mark.integration

WORKERS = 8
RESULTS = 100_000
DUPLICATES = 10_000  # keys finished a second time, by another worker, differently
KEYS = RESULTS - DUPLICATES  # distinct keys: 11,250 per worker
BATCH = 250  # a worker's own keys per flush (the sink's batches are up to 256)
SIDE_BY_SIDE_KEYS = 24_000  # the rollout's switch-over: a quarter of the flood


# -- the flood


def primary(i: int) -> TaskResult:
    """The result the key's own worker reports."""
    outcome = "failed" if i % 10 == 3 else "filtered" if i % 10 == 5 else "succeeded"
    marker = None if i % 7 == 0 else ("item" if i % 2 else "page")
    phase = "listing" if i % 4 == 0 else "product"
    warned = i % 11 == 0 and outcome == "succeeded"
    failure = ("timeout" if i % 20 == 3 else "http_500") if outcome == "failed" else None
    return msgspec.convert(
        {
            "key": f"https://shop.test/p/{i}",
            "url": f"https://shop.test/p/{i}",
            "phase": phase,
            "depth": 1,
            "outcome": outcome,
            "marker": marker,
            "attempt": 1,
            "error_class": failure,
            "error_message": "it failed" if outcome == "failed" else None,
            "records": (2 if phase == "listing" else 1) if outcome == "succeeded" else 0,
            "warnings": {"field_conversion": 1} if warned else {},
            "warning_fields": {"field_conversion|price": 1} if warned else {},
            "funnel": {f"discovered|product|{marker or ''}": 3, "new|product|item": i % 3}
            if phase == "listing"
            else {"fetched|product|item": 1},
        },
        TaskResult,
    )


def duplicate(i: int) -> TaskResult:
    """What another worker reports for the same key (a redelivery that ended otherwise)."""
    first = primary(i)
    if first.outcome == "succeeded":
        return msgspec.structs.replace(
            first,
            outcome="failed",
            error_class="duplicate",
            error_message="redelivered",
            records=0,
            warnings={"late": 1},
            warning_fields={},
            funnel={"fetched|product|late": 1},
        )
    return msgspec.structs.replace(
        first,
        outcome="succeeded",
        error_class=None,
        error_message=None,
        records=5,
        warnings={"dup_warning": 2},
        warning_fields={"dup_warning|title": 2},
        funnel={"extracted|product|dup": 1},
    )


def registered_first(i: int) -> bool:
    """Every 50th key is never registered: its first finish registers it."""
    return i % 50 != 7


def batches(worker: int, keys: int) -> list[list[int]]:
    """The worker's own keys (of the first ``keys``), in flushes."""
    own = list(range(worker, keys, WORKERS))
    return [own[b : b + BATCH] for b in range(0, len(own), BATCH)]


@dataclass
class Seen:
    """What one worker saw: each completion check after a flush (when the read began, and
    the counters it read), and when its last counting flush returned."""

    checks: list[tuple[float, Progress]] = field(default_factory=list)
    counted: int = 0
    last_commit: float = 0.0


async def run_worker(store: PostgresStateStore, execution_id: str, worker: int, keys: int) -> Seen:
    """Flush like the sink: register the next batch (children of this one), finish this one
    plus the duplicates of the previous worker's batch, check completion."""
    seen = Seen()
    mine, theirs = batches(worker, keys), batches((worker - 1) % WORKERS, keys)
    bound = 10**9 if worker % 2 else 0  # half of them take the bounded registration path

    async def register(batch: list[int]) -> None:
        urls = [f"https://shop.test/p/{i}" for i in batch if registered_first(i)]
        await store.register_tasks(execution_id, urls, max_total=bound, payloads=urls)

    await register(mine[0])
    for j, batch in enumerate(mine):
        if j + 1 < len(mine):
            await register(mine[j + 1])
        results = [primary(i) for i in batch]
        results += [duplicate(i) for i in theirs[j] if i % 9 == 0] if j < len(theirs) else []
        seen.counted += await store.finish_tasks(execution_id, results)
        seen.last_commit = time.monotonic()
        began = time.monotonic()
        seen.checks.append((began, await store.progress(execution_id)))
    return seen


def expected_progress(outcomes: dict[str, str], keys: int = KEYS) -> Progress:
    """The counters the task rows call for: per key, whichever of its results counted (the
    one whose outcome its row holds)."""
    published = finished = records = 0
    by_outcome: Counter[str] = Counter()
    by_phase: dict[str, Counter[str]] = {}
    by_marker: dict[str, Counter[str]] = {}
    failures: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    funnel: Counter[str] = Counter()
    for i in range(keys):
        first = primary(i)
        stored = outcomes[first.key]
        won = first if stored == first.outcome else duplicate(i)
        assert won.outcome == stored
        published += 1
        finished += 1
        records += won.records
        by_outcome[won.outcome] += 1
        by_phase.setdefault(won.phase, Counter())[won.outcome] += 1
        by_marker.setdefault(won.marker or "", Counter())[won.outcome] += 1
        if won.outcome == "failed":
            failures[won.error_class or "error"] += 1
        warnings.update(won.warnings)
        funnel.update(won.funnel)
    return Progress(
        published=published,
        finished=finished,
        by_outcome=dict(by_outcome),
        by_phase={k: dict(v) for k, v in by_phase.items()},
        by_marker={k: dict(v) for k, v in by_marker.items()},
        failures_by_class=dict(failures),
        warnings=dict(warnings),
        records=records,
        funnel=nest_funnel(funnel.items()),
    )


def new_execution() -> Execution:
    return Execution(
        id=f"ex-shards-{uuid.uuid4().hex[:12]}",
        workflow="shards",
        workflow_version=1,
        tenant=f"shards-{uuid.uuid4().hex[:8]}",
        created_at=FakeClock().wall(),
    )


@asynccontextmanager
async def stores(
    dsn: str, shards: list[tuple[int, int | None]]
) -> AsyncIterator[list[PostgresStateStore]]:
    """One store per (counter_shards, counter_shard), each with a pool of its own."""
    opened = [
        await PostgresStateStore.from_url(
            dsn, min_size=1, max_size=2, counter_shards=n, counter_shard=shard
        )
        for n, shard in shards
    ]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def flood(
    dsn: str, shards: list[tuple[int, int | None]], keys: int = KEYS
) -> tuple[str, list[Seen]]:
    """Every worker of ``shards`` runs its flushes at once on a new running execution."""
    async with stores(dsn, shards) as workers:
        execution = new_execution()
        await workers[0].create_execution(execution)
        await workers[0].transition(execution.id, "running", from_statuses={"pending"})
        seen = await asyncio.gather(
            *(run_worker(store, execution.id, w, keys) for w, store in enumerate(workers))
        )
    return execution.id, list(seen)


async def stored_outcomes(database: TestDatabase, execution_id: str) -> dict[str, str]:
    conn = await asyncpg.connect(database.direct_dsn)
    try:
        rows = await conn.fetch(
            "SELECT key, outcome FROM tasks WHERE execution_id = $1", execution_id
        )
    finally:
        await conn.close()
    return {row["key"]: row["outcome"] for row in rows}


def check_completion(seen: list[Seen], total: Progress) -> None:
    """Complete is never seen before every key has finished, and every check that began
    after the last flush committed sees it (there is one: the last flusher's)."""
    last_commit = max(s.last_commit for s in seen)
    late = [p for s in seen for began, p in s.checks if began >= last_commit]
    assert late, "no completion check began after the last flush"
    assert all(p.complete for p in late)
    for s in seen:
        for _, p in s.checks:
            if p.complete:
                assert (p.published, p.finished) == (total.published, total.finished)


async def test_eight_workers_flush_100k_results_and_the_counters_are_exact(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    started = time.monotonic()
    # Eight workers on four shards: two writers per shard row as well as across them.
    execution_id, seen = await flood(postgres_database.dsn, [(16, w % 4) for w in range(WORKERS)])
    elapsed = time.monotonic() - started
    outcomes = await stored_outcomes(postgres_database, execution_id)
    assert len(outcomes) == KEYS and None not in outcomes.values()
    expected = expected_progress(outcomes)
    async with stores(postgres_database.dsn, [(16, 15)]) as (reader,):
        progress = await reader.progress(execution_id)
        failures = [f async for f in reader.iter_failures(execution_id)]
        examples = await reader.warning_examples(execution_id)
        activity = await reader.activity(execution_id)
    assert progress == expected
    assert sum(s.counted for s in seen) == KEYS
    assert len(failures) == expected.by_outcome["failed"]
    assert sorted(Counter(f.error_class for f in failures).items()) == sorted(
        expected.failures_by_class.items()
    )
    by_field: Counter[tuple[str, str]] = Counter()
    for example in examples:
        by_field[example.kind, example.field] += example.count
    assert by_field == {
        ("field_conversion", "price"): expected.warnings["field_conversion"],
        ("dup_warning", "title"): expected.warnings["dup_warning"],
    }
    assert all(1 <= len(e.urls) <= 3 for e in examples)
    assert activity.last_finished_at is not None
    check_completion(seen, expected)
    print(f"\n{RESULTS} results from {WORKERS} workers counted in {elapsed:.1f} s")


# -- the rollout: the single-row target, alone and beside shards


@asynccontextmanager
async def single_row_state() -> AsyncIterator[Env[StateStore]]:
    database = session_database()
    await empty_tables(database.dsn)
    clock = FakeClock()
    store = await PostgresStateStore.from_url(
        database.dsn, min_size=1, max_size=8, clock=clock, counter_shards=1
    )
    try:
        yield Env(store, clock, fake_advance(clock))
    finally:
        await store.close()


LEDGER_CHECKS: dict[str, Callable[[Env[StateStore]], Awaitable[Any]]] = {
    name: check
    for name, check in vars(ledger_contract).items()
    if name.startswith("test_") and inspect.iscoroutinefunction(check)
}


@pytest.mark.parametrize("name", sorted(LEDGER_CHECKS))
async def test_the_single_row_target_keeps_the_ledger_contract(name: str) -> None:
    async with single_row_state() as env:
        await LEDGER_CHECKS[name](env)


async def test_single_row_and_shard_writers_side_by_side_count_exactly(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    """Mid-rollout, when TRAWL_COUNTER_SHARDS goes from 1 to 16: half the workers write the
    execution's row under its lock, half their shards, at once."""
    shards: list[tuple[int, int | None]] = [(1, None) if w % 2 else (16, w) for w in range(WORKERS)]
    execution_id, seen = await flood(postgres_database.dsn, shards, keys=SIDE_BY_SIDE_KEYS)
    outcomes = await stored_outcomes(postgres_database, execution_id)
    expected = expected_progress(outcomes, SIDE_BY_SIDE_KEYS)
    async with stores(postgres_database.dsn, [(1, None)]) as (reader,):
        assert await reader.progress(execution_id) == expected
    assert sum(s.counted for s in seen) == SIDE_BY_SIDE_KEYS
    check_completion(seen, expected)


async def test_a_freeze_stops_every_shard_at_once(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    """A cancel's freeze among eight writers on eight shards: whatever counted before it,
    nothing after, and the counts agree with the task rows."""
    async with stores(postgres_database.dsn, [(16, w) for w in range(WORKERS)]) as workers:
        execution = new_execution()
        await workers[0].create_execution(execution)
        await workers[0].transition(execution.id, "cancelled", from_statuses={"pending"})
        keys = [f"k{i:05}" for i in range(8000)]
        await workers[0].add_tasks(execution.id, keys)
        writing, frozen = asyncio.Event(), asyncio.Event()

        async def write(w: int) -> list[tuple[int, bool]]:
            done = []
            for b in range(w * 1000, (w + 1) * 1000, 100):
                was_frozen = frozen.is_set()
                results = [result(k) for k in keys[b : b + 100]]
                done.append((await workers[w].finish_tasks(execution.id, results), was_frozen))
                writing.set()
            return done

        async def freeze() -> bool:
            await writing.wait()  # once some batch has counted, with the others under way
            froze = await workers[0].freeze(execution.id)
            frozen.set()
            return froze

        freezing = asyncio.create_task(freeze())
        written = await asyncio.gather(*(write(w) for w in range(WORKERS)))
        assert await freezing is True
        counted = sum(n for batch in written for n, _ in batch)
        assert all(n == 0 for batch in written for n, after in batch if after)
        progress = await workers[3].progress(execution.id)
        outcomes = await stored_outcomes(postgres_database, execution.id)
        finished_rows = sum(1 for o in outcomes.values() if o is not None)
        assert progress.finished == progress.records == counted == finished_rows
        assert counted >= 100  # the batch that let the freeze start, at least
        assert await workers[5].finish_tasks(execution.id, [result(keys[-1])]) == 0
        assert await workers[5].add_tasks(execution.id, ["late"]) == []
        assert await workers[6].progress(execution.id) == progress


def result(key: str) -> TaskResult:
    return TaskResult(key=key, url=key, phase="product", depth=1, outcome="succeeded", records=1)


async def test_the_counters_bench_reports_what_its_results_file_shows() -> None:
    """bench/counters.py on a tiny flood (two writers, a window): its row of the table."""
    database = create_database()
    try:
        row = await one_run(
            database, PGBOUNCER_PORT, 2, results=1100, batch=100, shards=16, window=300
        )
    finally:
        drop_database(database)
    assert row["writers"] == 2 and row["results"] >= 1000
    assert 0 <= row["lock_wait_pct"] <= 100 and row["finish_p99_ms"] >= row["finish_p50_ms"]
    assert table([row]).splitlines()[2].startswith("| 2 | ")
