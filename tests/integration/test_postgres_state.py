"""PostgresStateStore against real Postgres through real PgBouncer (transaction mode): what
the contract suite cannot show. Multiplexed server connections, versioned migrations,
surviving a PgBouncer crash, clear errors for a dead or unmigrated database, batching."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import msgspec
import pytest

from backends.errors import PermanentError, RetryableError
from backends.postgres import PostgresPool, PostgresStateStore, migrate
from backends.postgres.errors import describe_dsn
from backends.postgres.migrate import MIGRATIONS, load_migrations
from backends.state import Execution, OutputObject, TaskResult
from tests.services import free_port
from tests.services.postgres import (
    PgBouncer,
    TestDatabase,
    create_database,
    drop_database,
    postgres_database,  # noqa: F401 - fixture
    private_pgbouncer,  # noqa: F401 - fixture
)

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

pytestmark = pytest.mark.integration

VERSIONS = [m.version for m in load_migrations()]


def execution(id: str) -> Execution:
    return msgspec.convert(
        {"id": id, "workflow": "shop", "workflow_version": 1, "created_at": "2026-01-01T00:00:00Z"},
        Execution,
    )


def result(key: str, outcome: str = "succeeded", **extra: object) -> TaskResult:
    fields = {"key": key, "url": key, "phase": "product", "depth": 1, "outcome": outcome}
    return msgspec.convert({**fields, **extra}, TaskResult)


def new_id() -> str:
    return f"ex-{uuid.uuid4().hex[:12]}"


async def wait_until(condition: object, deadline_s: float = 10.0) -> None:
    """Let the loop run until ``condition()`` holds; fail after ``deadline_s``."""
    assert callable(condition)
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_s} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def blank_database() -> Iterator[TestDatabase]:
    """A database of the test's own with no schema yet."""
    database = create_database(migrated=False)
    try:
        yield database
    finally:
        drop_database(database)


@pytest.fixture
async def store(postgres_database: TestDatabase) -> AsyncIterator[PostgresStateStore]:  # noqa: F811
    store = await PostgresStateStore.from_url(postgres_database.dsn, min_size=1, max_size=8)
    try:
        yield store
    finally:
        await store.close()


# -- transaction pooling


async def test_pgbouncer_multiplexes_transactions(
    private_pgbouncer: PgBouncer,  # noqa: F811
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    """The PgBouncer these tests use runs in transaction mode: a client holds a server
    connection only while in a transaction, and the next transaction takes the server
    connection most recently released (LIFO), whoever used it before."""
    dsn = private_pgbouncer.dsn(postgres_database.name)
    one = await asyncpg.connect(dsn, statement_cache_size=0)
    two = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        first = await one.fetchval("SELECT pg_backend_pid()")
        async with two.transaction():
            held = await two.fetchval("SELECT pg_backend_pid()")
            second = await one.fetchval("SELECT pg_backend_pid()")
        # In session mode `one` would keep `first` throughout, and `two` have another.
        assert (held, second != first) == (first, True)
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://trawl:s3cret@db.internal:6432/trawl", "db.internal:6432/trawl"),
        ("postgresql://trawl:s3cret@db.internal/trawl", "db.internal:5432/trawl"),
        ("postgresql://u:p@[::1]:6432/db?sslmode=require", "[::1]:6432/db"),
        ("postgresql:///trawl?host=/cloudsql/p:r:i", "/cloudsql/p:r:i/trawl"),
    ],
)
def test_errors_name_the_database_without_credentials(dsn: str, shown: str) -> None:
    assert describe_dsn(dsn) == shown


SESSION_STATE = re.compile(
    r"(^|;)\s*(SET|RESET|LISTEN|UNLISTEN|PREPARE|DEALLOCATE|DECLARE|CREATE\s+TEMP)\b"
    r"|set_config|pg_advisory_lock|pg_advisory_unlock",
    re.IGNORECASE,
)


async def test_the_store_sends_nothing_that_lives_in_the_session(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    """What would break (or leak to other clients) through PgBouncer in transaction mode:
    SET, LISTEN, prepared statements, cursors, temporary tables, session advisory locks, and
    asyncpg's type introspection (it SETs jit for the session)."""
    statements: list[str] = []

    async def log_queries(conn: asyncpg.Connection[asyncpg.Record]) -> None:
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    pool = await PostgresPool.connect(postgres_database.dsn, max_size=2, init=log_queries)
    store = PostgresStateStore(pool)
    try:
        ex = new_id()
        await store.put_workflow("t", "shop", "a", "{}")
        await store.get_workflow("t", "shop", version=1)
        await store.list_workflows("t")
        await store.create_execution(execution(ex))
        await store.get_execution(ex)
        await store.list_executions("default", workflow="shop", limit=5)
        await store.transition(ex, "running", from_statuses={"pending"}, error="x")
        await store.add_tasks(ex, ["a", "b", "c"], max_total=10)
        await store.remove_tasks(ex, ["c"])
        failed = result("b", "failed", error_class="timeout", attempt=2, warnings={"w": 1})
        await store.finish_tasks(ex, [result("a", marker="m", records=3), failed])
        await store.progress(ex)
        await store.failures(ex)
        await store.add_output(ex, OutputObject(path="p", size_bytes=1, records=1, kind="part"))
        await store.outputs(ex)
        await store.delete_workflow("t", "shop")
    finally:
        await store.close()
    assert len(statements) > 15
    assert [s for s in statements if SESSION_STATE.search(s)] == []


async def test_many_clients_over_two_server_connections(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    """Twenty pooled clients share two server connections (pool_size 2) transaction by
    transaction: nothing the store does may outlive its transaction."""
    bouncer = PgBouncer.create(free_port(), pool_size=2)
    bouncer.start()
    store = await PostgresStateStore.from_url(
        bouncer.dsn(postgres_database.name), min_size=4, max_size=20
    )
    try:
        ex = new_id()
        await store.create_execution(execution(ex))
        assert await store.transition(ex, "running", from_statuses={"pending"})

        async def worker(w: int) -> None:
            keys = [f"w{w}-{i}" for i in range(20)]
            assert await store.add_tasks(ex, keys) == keys
            await store.finish_tasks(ex, [result(k) for k in keys[:10]])
            await store.progress(ex)
            await store.finish_tasks(ex, [result(k, "filtered") for k in keys[10:]])

        await asyncio.gather(*(worker(w) for w in range(20)))
        progress = await store.progress(ex)
        assert (progress.published, progress.finished) == (400, 400)
        assert progress.by_outcome == {"succeeded": 200, "filtered": 200}
    finally:
        await store.close()
        bouncer.stop()
        shutil.rmtree(bouncer.workdir, ignore_errors=True)


# -- migrations


async def test_migrations_apply_once_even_when_run_concurrently(
    blank_database: TestDatabase,
) -> None:
    runs = await asyncio.gather(*(migrate(blank_database.dsn) for _ in range(4)))
    # Each migration takes the lock on its own, so on a busy machine one runner may apply
    # the first versions and another the last: what matters is that every version is
    # applied by exactly one of them, in order within each runner.
    applied = [version for run in runs for version in run]
    assert sorted(applied) == VERSIONS
    assert all(run == sorted(run) for run in runs)
    assert await migrate(blank_database.dsn) == []
    conn = await asyncpg.connect(blank_database.direct_dsn)
    try:
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in recorded] == VERSIONS
    finally:
        await conn.close()


async def test_new_migrations_apply_in_order_and_a_failing_one_leaves_nothing(
    blank_database: TestDatabase, tmp_path: Path
) -> None:
    for migration in MIGRATIONS.iterdir():
        (tmp_path / migration.name).write_text(migration.read_text())
    (tmp_path / "0903_third.sql").write_text("ALTER TABLE extra ADD COLUMN y int;")
    (tmp_path / "0902_second.sql").write_text("CREATE TABLE extra (x int);")
    assert await migrate(blank_database.dsn, directory=tmp_path) == [
        *VERSIONS,
        "0902_second",
        "0903_third",
    ]

    (tmp_path / "0904_broken.sql").write_text("CREATE TABLE doomed (x int); SELECT 1 / 0;")
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
        await migrate(blank_database.dsn, directory=tmp_path)
    conn = await asyncpg.connect(blank_database.direct_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('doomed')") is None
        assert not await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = '0904_broken'"
        )
    finally:
        await conn.close()

    (tmp_path / "0904_broken.sql").unlink()
    (tmp_path / "0902_second.sql").write_text("CREATE TABLE extra (x bigint);")
    with pytest.raises(PermanentError, match=r"0902_second was applied .* with different SQL"):
        await migrate(blank_database.dsn, directory=tmp_path)


async def test_an_unmigrated_database_says_to_migrate(blank_database: TestDatabase) -> None:
    store = await PostgresStateStore.from_url(blank_database.dsn, min_size=1, max_size=2)
    try:
        with pytest.raises(PermanentError, match="run `trawl migrate`"):
            await store.progress("ex-1")
    finally:
        await store.close()


# -- failures of the service


async def test_a_pgbouncer_crash_is_survived(
    private_pgbouncer: PgBouncer,  # noqa: F811
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    store = await PostgresStateStore.from_url(
        private_pgbouncer.dsn(postgres_database.name), min_size=2, max_size=4
    )
    try:
        ex = new_id()
        await store.create_execution(execution(ex))
        assert await store.add_tasks(ex, ["a", "b", "c"]) == ["a", "b", "c"]

        # Crashed and back between two calls: the pooled connections are dead.
        private_pgbouncer.restart(kill=True)
        assert await store.finish_tasks(ex, [result("a")]) == 1

        # Down when a call starts: it retries until PgBouncer is back.
        private_pgbouncer.stop(kill=True)
        retries = store.pool.retries
        pending = asyncio.create_task(store.finish_tasks(ex, [result("b"), result("a")]))
        await wait_until(lambda: store.pool.retries > retries)
        private_pgbouncer.start()
        assert await pending == 1

        progress = await store.progress(ex)
        assert (progress.published, progress.finished) == (3, 2)
        assert await store.transition(ex, "running", from_statuses={"pending"})
    finally:
        await store.close()


async def test_a_connection_lost_mid_operation_is_retried_only_if_idempotent(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    pool = await PostgresPool.connect(postgres_database.dsn, max_size=2)
    calls: list[int] = []

    async def op(conn: Connection) -> int:
        calls.append(1)
        if len(calls) == 1:  # the server connection dies under the statement
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return 42

    try:
        assert await pool.run(op, idempotent=True) == 42
        assert (len(calls), pool.retries) == (2, 1)
        calls.clear()
        with pytest.raises(RetryableError, match="whether it took effect is unknown"):
            await pool.run(op, idempotent=False)
        assert len(calls) == 1
    finally:
        await pool.close()


async def test_a_dead_database_is_a_retryable_error_naming_it() -> None:
    port = free_port()
    dsn = f"postgresql://trawl:s3cret@127.0.0.1:{port}/trawl"
    with pytest.raises(RetryableError) as caught:
        await PostgresStateStore.from_url(dsn, retry_deadline_s=0.2)
    message = str(caught.value)
    assert f"Postgres at 127.0.0.1:{port}/trawl is unavailable" in message
    assert "s3cret" not in message
    with pytest.raises(RetryableError, match=f"127.0.0.1:{port}/trawl"):
        await migrate(dsn, retry_deadline_s=0.2)


async def test_a_database_that_goes_away_is_a_retryable_error(
    private_pgbouncer: PgBouncer,  # noqa: F811
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    dsn = private_pgbouncer.dsn(postgres_database.name)
    pool = await PostgresPool.connect(dsn, min_size=1, max_size=2, retry_deadline_s=0.3)
    store = PostgresStateStore(pool)
    try:
        await store.progress("ex-1")
        private_pgbouncer.stop(kill=True)
        with pytest.raises(RetryableError, match=f"127.0.0.1:{private_pgbouncer.port}/") as caught:
            await store.progress("ex-1")
        assert caught.value.error_class == "database_unavailable"
    finally:
        await store.close()


# -- batching


async def test_a_batch_costs_the_same_statements_whatever_its_size(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    statements: list[str] = []

    async def log_queries(conn: asyncpg.Connection[asyncpg.Record]) -> None:
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    pool = await PostgresPool.connect(postgres_database.dsn, max_size=2, init=log_queries)
    store = PostgresStateStore(pool)
    try:
        ex = new_id()
        await store.create_execution(execution(ex))
        # A process's first write to an execution creates its counters shard row, once.
        await store.add_tasks(ex, ["warm-up"])
        assert await store.remove_tasks(ex, ["warm-up"]) == 1
        cost: dict[str, list[int]] = {"add": [], "finish": []}
        for size in (1, 500):
            keys = [f"{size}-{i}" for i in range(size)]
            statements.clear()
            await store.add_tasks(ex, keys)
            cost["add"].append(len(statements))
            results = [
                result(k, "failed", error_class="timeout", warnings={"w": 1})
                if i % 3 == 0
                else result(k, records=2)
                for i, k in enumerate(keys)
            ]
            statements.clear()
            assert await store.finish_tasks(ex, results + results[:5]) == size
            cost["finish"].append(len(statements))
        # BEGIN, enter the store's counters shard, the batch, COMMIT; a finish claims its
        # keys (locks their rows) in a statement of its own before it counts them.
        assert cost == {"add": [4, 4], "finish": [5, 5]}

        progress = await store.progress(ex)
        failed = 1 + 167
        assert (progress.published, progress.finished) == (501, 501)
        assert progress.by_outcome == {"failed": failed, "succeeded": 501 - failed}
        assert progress.failures_by_class == {"timeout": failed}
        assert progress.warnings == {"w": failed}
        assert progress.records == 2 * (501 - failed)
        assert len(await store.failures(ex, limit=1000)) == failed
    finally:
        await store.close()


async def test_text_postgres_cannot_hold_is_cleaned(store: PostgresStateStore) -> None:
    ex = new_id()
    failed = result("k", "failed", error_class="http_500", error_message="bad\x00body")
    assert await store.finish_tasks(ex, [failed]) == 1
    [failure] = await store.failures(ex)
    assert (failure.key, failure.message) == ("k", "badbody")
