"""The Redis adapters in the SeenSet and RateLimiter contract suites.

Each env gets a key prefix of its own on the shared test Redis (started if needed) and
deletes its keys afterwards. The limiter is given the env's FakeClock (see
backends/redis/ratelimit.py for why the suite cannot run on Redis's clock); the script is
the one production runs, with ``now`` passed in instead of read from ``TIME``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backends.clock import FakeClock
from backends.ratelimit import RateLimiter
from backends.redis import RedisRateLimiter, RedisSeenSet, connect
from backends.seen import SeenSet
from tests.contract.conftest import Env, fake_advance
from tests.services.redis import delete_prefix, ensure_redis, unique_prefix


@asynccontextmanager
async def redis_seen() -> AsyncIterator[Env[SeenSet]]:
    client = connect(await asyncio.to_thread(ensure_redis))
    prefix = unique_prefix()
    clock = FakeClock()
    seen = RedisSeenSet(client, prefix=prefix)
    try:
        yield Env(seen, clock, fake_advance(clock))
    finally:
        await delete_prefix(client, prefix)
        await seen.close()
        await client.aclose()


@asynccontextmanager
async def redis_ratelimit() -> AsyncIterator[Env[RateLimiter]]:
    client = connect(await asyncio.to_thread(ensure_redis))
    prefix = unique_prefix()
    clock = FakeClock()
    limiter = RedisRateLimiter(client, prefix=prefix, clock=clock)
    try:
        yield Env(limiter, clock, fake_advance(clock))
    finally:
        await delete_prefix(client, prefix)
        await limiter.close()
        await client.aclose()


SEEN = {"redis": redis_seen}
RATELIMIT = {"redis": redis_ratelimit}
