"""Row retention against real Postgres through PgBouncer: ``trawl prune --dry-run`` and
``trawl prune`` as an operator runs them; the orchestrators' hourly job, one instance at a
time; and a prune in small batches beside a running crawl's writers, which lose nothing.

The session's database is shared with other tests: executions have ids of their own, and
what is checked is theirs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from backends.clock import FakeClock
from backends.postgres import PostgresStateStore
from backends.state import LoginSession, OutputObject, PruneCounts, SessionCookie
from orchestrator.retention import RetentionJob
from tests.contract.state_data import execution, result
from tests.services.postgres import TestDatabase, postgres_database  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PART = OutputObject(path="parts/p/part-w1-000001.jsonl", size_bytes=10, records=1, kind="part")
EXPORT = OutputObject(path="export/summary.json", size_bytes=5, records=0, kind="summary")


def trawl(database: TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    """``trawl ARGS`` with the database as its only setting."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "TRAWL_DATABASE_URL": database.dsn,
    }
    return subprocess.run(
        [sys.executable, "-m", "trawl", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


async def store_at(database: TestDatabase, days_ago: float) -> PostgresStateStore:
    """A store whose clock reads ``days_ago`` days before now."""
    clock = FakeClock(wall_start=datetime.now(UTC) - timedelta(days=days_ago))
    return await PostgresStateStore.from_url(database.dsn, max_size=4, clock=clock)


@pytest.fixture
async def old_store(postgres_database: TestDatabase) -> AsyncIterator[PostgresStateStore]:  # noqa: F811
    store = await store_at(postgres_database, 30)
    try:
        yield store
    finally:
        await store.close()


async def crawl(store: PostgresStateStore, execution_id: str, keys: int) -> None:
    """A completed execution as a crawl leaves it."""
    await store.create_execution(execution(execution_id))
    await store.transition(execution_id, "running", from_statuses=["pending"])
    names = [f"http://shop.test/{execution_id}/{n}" for n in range(keys)]
    await store.add_tasks(execution_id, names, payloads=[f'{{"n": {n}}}' for n in range(keys)])
    for start in range(0, keys, 500):
        await store.finish_tasks(execution_id, [result(k) for k in names[start : start + 500]])
    await store.add_output(execution_id, PART)
    await store.add_output(execution_id, EXPORT)
    cookie = SessionCookie(name="sid", value="v", domain="shop.test")
    await store.put_session(execution_id, LoginSession(cookies=[cookie]))
    await store.transition(execution_id, "completed", from_statuses=["running"])


async def task_rows(database: TestDatabase, execution_id: str) -> int:
    conn = await asyncpg.connect(database.direct_dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE execution_id = $1", execution_id
        )
        return count
    finally:
        await conn.close()


async def test_trawl_prune_dry_run_then_prune(
    postgres_database: TestDatabase,  # noqa: F811
    old_store: PostgresStateStore,
    tag: str,
) -> None:
    old, recent = f"ex-old-{tag}", f"ex-recent-{tag}"
    await crawl(old_store, old, keys=3)
    recent_store = await store_at(postgres_database, 2)
    try:
        await crawl(recent_store, recent, keys=2)
    finally:
        await recent_store.close()
    before = await old_store.progress(old)
    line = (
        "{} {}: 3 task row(s), 1 part-file entr(ies), 1 login session(s), 0 settled webhook call(s)"
    )

    dry = await asyncio.to_thread(trawl, postgres_database, "prune", "--dry-run", "--days", "7")
    assert dry.returncode == 0, dry.stderr
    assert line.format("would prune", old) in dry.stdout.splitlines()
    assert recent not in dry.stdout
    assert "would prune " in dry.stdout.splitlines()[-1]
    assert await task_rows(postgres_database, old) == 3

    done = await asyncio.to_thread(trawl, postgres_database, "prune", "--days", "7")
    assert done.returncode == 0, done.stderr
    assert line.format("pruned", old) in done.stdout.splitlines()
    assert recent not in done.stdout
    assert await task_rows(postgres_database, old) == 0
    assert await task_rows(postgres_database, recent) == 2
    assert await old_store.progress(old) == before
    assert await old_store.outputs(old) == [EXPORT]
    assert await old_store.get_session(old) is None

    again = await asyncio.to_thread(trawl, postgres_database, "prune", "--days", "7")
    assert old not in again.stdout


async def test_two_orchestrators_take_turns_at_the_job(
    postgres_database: TestDatabase,  # noqa: F811
    old_store: PostgresStateStore,
    tag: str,
) -> None:
    await crawl(old_store, f"ex-job-{tag}", keys=4)
    a = await PostgresStateStore.from_url(postgres_database.dsn, max_size=2)
    b = await PostgresStateStore.from_url(postgres_database.dsn, max_size=2)
    try:
        clock = FakeClock(wall_start=datetime.now(UTC))
        first = RetentionJob(a, clock, days=7, owner=f"a-{tag}", interval_s=3600)
        second = RetentionJob(b, clock, days=7, owner=f"b-{tag}", interval_s=3600)
        rounds = await asyncio.gather(first.round(), second.round())
        assert sum(r is None for r in rounds) == 1  # one of them held the claim
        assert await task_rows(postgres_database, f"ex-job-{tag}") == 0
    finally:
        await a.close()
        await b.close()


async def test_a_prune_in_small_batches_beside_a_running_crawl_loses_nothing(
    postgres_database: TestDatabase,  # noqa: F811
    old_store: PostgresStateStore,
    tag: str,
) -> None:
    old, running = f"ex-big-{tag}", f"ex-live-{tag}"
    await crawl(old_store, old, keys=3000)
    live = await PostgresStateStore.from_url(postgres_database.dsn, max_size=4)
    try:
        await live.create_execution(execution(running))
        await live.transition(running, "running", from_statuses=["pending"])
        keys = [f"http://live.test/{n}" for n in range(2000)]
        await live.add_tasks(running, keys)

        async def finish() -> None:
            for start in range(0, len(keys), 100):
                await live.finish_tasks(running, [result(k) for k in keys[start : start + 100]])

        ended_before = datetime.now(UTC) - timedelta(days=7)
        pruned, _ = await asyncio.gather(
            live.prune_execution(old, ended_before=ended_before, batch=50), finish()
        )
        assert pruned == PruneCounts(executions=1, tasks=3000, part_outputs=1, sessions=1)
        progress = await live.progress(running)
        assert (progress.published, progress.finished) == (2000, 2000)
        assert await task_rows(postgres_database, running) == 2000
        assert (await live.progress(old)).published == 3000
    finally:
        await live.close()
