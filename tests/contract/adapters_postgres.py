"""The StateStore contract over Postgres, through PgBouncer in transaction pooling mode.

Every test gets emptied tables in the session's database and a store on a FakeClock (its
timestamps are the clock's, so ``advance`` needs no sleeping); the store's retries keep
real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backends.clock import FakeClock
from backends.postgres import PostgresStateStore
from backends.state import StateStore
from tests.contract.conftest import Env, fake_advance
from tests.services.postgres import empty_tables, session_database


@asynccontextmanager
async def postgres_state() -> AsyncIterator[Env[StateStore]]:
    database = session_database()
    await empty_tables(database.dsn)
    clock = FakeClock()
    store = await PostgresStateStore.from_url(database.dsn, min_size=1, max_size=8, clock=clock)
    try:
        yield Env(store, clock, fake_advance(clock))
    finally:
        await store.close()


STATE = {"postgres": postgres_state}
