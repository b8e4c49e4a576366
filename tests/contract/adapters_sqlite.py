"""The SQLite adapters of embedded runs in the TaskQueue, SeenSet and StateStore suites.

Each env opens a fresh store file in a temporary directory. SQLite needs no service, so these
run with the unit tests (``SERVICE = False``), not only under the ``integration`` marker.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from backends.clock import FakeClock
from backends.seen import SeenSet
from backends.sqlite import SqliteDb, SqliteSeenSet, SqliteStateStore, SqliteTaskQueue
from backends.state import StateStore
from tests.contract.conftest import Env, QueueEnv, fake_advance

SERVICE = False


@asynccontextmanager
async def _db() -> AsyncIterator[SqliteDb]:
    with tempfile.TemporaryDirectory(prefix="trawl-sqlite-") as root:
        db = SqliteDb(Path(root) / "state.db")
        try:
            yield db
        finally:
            db.close()


@asynccontextmanager
async def sqlite_queue() -> AsyncIterator[QueueEnv]:
    async with _db() as db:
        clock = FakeClock()
        queue = SqliteTaskQueue(db, clock, ack_deadline_s=10.0)
        try:
            yield QueueEnv(queue, clock, fake_advance(clock), ack_deadline_s=10.0)
        finally:
            await queue.close()


@asynccontextmanager
async def sqlite_seen() -> AsyncIterator[Env[SeenSet]]:
    async with _db() as db:
        clock = FakeClock()
        seen = await SqliteSeenSet.open(db)
        try:
            yield Env(seen, clock, fake_advance(clock))
        finally:
            await seen.close()


@asynccontextmanager
async def sqlite_state() -> AsyncIterator[Env[StateStore]]:
    async with _db() as db:
        clock = FakeClock()
        store = await SqliteStateStore.open(db, clock)
        try:
            yield Env(store, clock, fake_advance(clock))
        finally:
            await store.close()


QUEUE = {"sqlite": sqlite_queue}
SEEN = {"sqlite": sqlite_seen}
STATE = {"sqlite": sqlite_state}
