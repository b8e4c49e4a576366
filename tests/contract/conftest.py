"""Adapters the contract suites run over, one async factory per adapter.

A factory is an async context manager yielding an ``Env``: the adapter, the clock it was
given, and ``advance(seconds)``, which moves that clock and lets woken tasks run. Memory
adapters get a FakeClock; an adapter whose time is kept by a server (Pub/Sub deadlines) may
use the SystemClock and an ``advance`` that sleeps for real.

To run a suite over another adapter: write its factory in a module
``tests/contract/adapters_<service>.py`` that defines any of ``QUEUE``, ``SEEN``,
``RATELIMIT``, ``STATE``, ``BLOB`` as a dict of adapter name to factory. Every such module is
found here and its adapters join the suites, marked ``integration`` (they need a service)
unless the module sets ``SERVICE = False``.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from backends.blobs import BlobStore
from backends.clock import Clock, FakeClock
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.queue import TaskQueue
from backends.ratelimit import RateLimiter
from backends.seen import SeenSet
from backends.state import StateStore

A = TypeVar("A")


@dataclass
class Env(Generic[A]):
    adapter: A
    clock: Clock
    advance: Callable[[float], Awaitable[None]]


@dataclass
class QueueEnv(Env[TaskQueue]):
    ack_deadline_s: float = 10.0


def fake_advance(clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    async def advance(seconds: float) -> None:
        await clock.run_for(seconds)

    return advance


Factory = Callable[[], AbstractAsyncContextManager[Any]]

_PLUGINS = [
    importlib.import_module(f"tests.contract.{path.stem}")
    for path in sorted(Path(__file__).parent.glob("adapters_*.py"))
]


def _adapters(kind: str, builtin: dict[str, Factory]) -> tuple[dict[str, Factory], list[Any]]:
    """The factories for one port: the built-in ones, then every plugin's (integration)."""
    factories = dict(builtin)
    params = [pytest.param(name) for name in builtin]
    for plugin in _PLUGINS:
        for name, factory in getattr(plugin, kind, {}).items():
            factories[name] = factory
            # A plugin whose adapters need no service (SERVICE = False) runs unmarked.
            marks = [pytest.mark.integration] if getattr(plugin, "SERVICE", True) else []
            params.append(pytest.param(name, marks=marks))
    return factories, params


# -- TaskQueue


@asynccontextmanager
async def memory_queue() -> AsyncIterator[QueueEnv]:
    clock = FakeClock()
    # Pub/Sub's smallest ack deadline, so the suite reads the same for both.
    queue = MemoryTaskQueue(clock, ack_deadline_s=10.0)
    try:
        yield QueueEnv(queue, clock, fake_advance(clock), ack_deadline_s=10.0)
    finally:
        await queue.close()


QUEUE_FACTORIES, QUEUE_ADAPTERS = _adapters("QUEUE", {"memory": memory_queue})


@pytest.fixture(params=QUEUE_ADAPTERS)
async def queue_env(request: pytest.FixtureRequest) -> AsyncIterator[QueueEnv]:
    async with QUEUE_FACTORIES[request.param]() as env:
        yield env


# -- SeenSet


@asynccontextmanager
async def memory_seen() -> AsyncIterator[Env[SeenSet]]:
    clock = FakeClock()
    seen = MemorySeenSet()
    try:
        yield Env(seen, clock, fake_advance(clock))
    finally:
        await seen.close()


SEEN_FACTORIES, SEEN_ADAPTERS = _adapters("SEEN", {"memory": memory_seen})


@pytest.fixture(params=SEEN_ADAPTERS)
async def seen_env(request: pytest.FixtureRequest) -> AsyncIterator[Env[SeenSet]]:
    async with SEEN_FACTORIES[request.param]() as env:
        yield env


# -- RateLimiter


@asynccontextmanager
async def memory_ratelimit() -> AsyncIterator[Env[RateLimiter]]:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock)
    try:
        yield Env(limiter, clock, fake_advance(clock))
    finally:
        await limiter.close()


RATELIMIT_FACTORIES, RATELIMIT_ADAPTERS = _adapters("RATELIMIT", {"memory": memory_ratelimit})


@pytest.fixture(params=RATELIMIT_ADAPTERS)
async def ratelimit_env(request: pytest.FixtureRequest) -> AsyncIterator[Env[RateLimiter]]:
    async with RATELIMIT_FACTORIES[request.param]() as env:
        yield env


# -- StateStore


@asynccontextmanager
async def memory_state() -> AsyncIterator[Env[StateStore]]:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    try:
        yield Env(store, clock, fake_advance(clock))
    finally:
        await store.close()


STATE_FACTORIES, STATE_ADAPTERS = _adapters("STATE", {"memory": memory_state})


@pytest.fixture(params=STATE_ADAPTERS)
async def state_env(request: pytest.FixtureRequest) -> AsyncIterator[Env[StateStore]]:
    async with STATE_FACTORIES[request.param]() as env:
        yield env


# -- BlobStore


@asynccontextmanager
async def local_blobs() -> AsyncIterator[Env[BlobStore]]:
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="trawl-blobs-") as root:
        store = LocalBlobStore(Path(root) / "store")
        try:
            yield Env(store, clock, fake_advance(clock))
        finally:
            await store.close()


BLOB_FACTORIES, BLOB_ADAPTERS = _adapters("BLOB", {"local": local_blobs})


@pytest.fixture(params=BLOB_ADAPTERS)
async def blob_env(request: pytest.FixtureRequest) -> AsyncIterator[Env[BlobStore]]:
    async with BLOB_FACTORIES[request.param]() as env:
        yield env
