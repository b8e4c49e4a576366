"""The Redis adapters against real redis-servers: batching, TTLs, retries, outages, restarts.

The contract suites (tests/contract) already check the semantics over Redis; these tests
check what only a real server shows: how many round trips an operation costs, that keys
expire, that a reply lost on the wire does not change an answer, and what workers see when
Redis stalls, dies, or comes back empty.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from redis.asyncio import Connection, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from backends.clock import FakeClock
from backends.errors import InvalidInputError, RetryableError
from backends.ratelimit import Grant, RatePolicy
from backends.redis import RedisOptions, RedisRateLimiter, RedisSeenSet, connect
from backends.redis.seen import MAX_KEYS_PER_CALL
from tests.services import redis as redis_service
from tests.services.redis import RedisServer

pytestmark = pytest.mark.integration

# The service's fixtures, for this module (tests/conftest.py does not list the module).
redis_url = redis_service.redis_url
redis_client = redis_service.redis_client
redis_prefix = redis_service.redis_prefix
throwaway_redis = redis_service.throwaway_redis

T = TypeVar("T")
DEADLINE_S = 10.0


def policy(**overrides: float) -> RatePolicy:
    values: dict[str, Any] = {
        "rate_per_s": 1000.0,
        "burst": 1000,
        "min_interval_s": 0.0,
        "max_concurrency": 1000,
    }
    values.update(overrides)
    return RatePolicy(**values)


class WireConnection(Connection):
    """A connection that records the requests it writes (one per round trip) and can lose
    the next reply after the server has acted on it, as a dropped connection would."""

    sent: list[str]  # the first command's name of each request
    lose_next_reply = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes | str) else b"".join(command)
        packed = packed.encode() if isinstance(packed, str) else packed
        type(self).sent.append(packed.split(b"\r\n")[2].decode().upper())
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        if type(self).lose_next_reply:
            type(self).lose_next_reply = False
            await self.disconnect()
            raise RedisConnectionError("the reply was lost on the way")
        return response


@pytest.fixture
async def wire(redis_url: str) -> AsyncIterator[tuple[Redis, type[WireConnection]]]:
    """A client whose connections count round trips (no health-check PINGs to muddle it)."""
    connection_class = type("Wire", (WireConnection,), {"sent": [], "lose_next_reply": False})
    options = RedisOptions(max_connections=4, health_check_interval_s=0)
    client = connect(redis_url, options, connection_class=connection_class)
    try:
        yield client, connection_class
    finally:
        await client.aclose()


async def round_trips(wire: type[WireConnection], operation: Awaitable[T]) -> tuple[int, T]:
    """How many requests ``operation`` wrote, and its result."""
    before = len(wire.sent)
    result = await operation
    return len(wire.sent) - before, result


async def eventually(check: Callable[[], Awaitable[T]], what: str) -> T:
    """``check()``'s result once it stops raising RetryableError, within DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return await check()
        except RetryableError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {DEADLINE_S} s") from None
            await asyncio.sleep(0.05)


# -- round trips


async def test_add_new_is_one_round_trip_per_batch(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    seen = RedisSeenSet(client, prefix=redis_prefix)
    await seen.add_new("ex-1", ["warm-up"])  # connects and loads the script
    for size in (1, 60, 5000):
        keys = [f"http://site.test/{size}/{i}" for i in range(size)]
        trips, flags = await round_trips(counter, seen.add_new("ex-1", keys))
        assert (trips, flags) == (1, [True] * size)
    trips, _ = await round_trips(counter, seen.add_new("ex-1", []))
    assert trips == 0
    huge = [f"k{i}" for i in range(MAX_KEYS_PER_CALL + 1)]
    trips, flags = await round_trips(counter, seen.add_new("ex-1", huge))
    assert (trips, all(flags)) == (2, True)  # split to bound how long one script blocks Redis
    assert (await round_trips(counter, seen.discard("ex-1", huge)))[0] == 1
    assert (await round_trips(counter, seen.forget("ex-1")))[0] == 1


async def test_acquire_and_release_are_one_round_trip_each(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    limiter = RedisRateLimiter(client, prefix=redis_prefix)
    rule = policy(rate_per_s=1.0, burst=1, max_concurrency=1)
    await limiter.release("warm-up", (await limiter.acquire("warm-up", rule)).lease_id)
    trips, grant = await round_trips(counter, limiter.acquire("k", rule))
    assert (trips, grant.granted) == (1, True)
    trips, denied = await round_trips(counter, limiter.acquire("k", rule))
    assert (trips, denied.granted) == (1, False)
    assert (await round_trips(counter, limiter.release("k", grant.lease_id)))[0] == 1


async def test_a_permit_whose_caller_stopped_waiting_is_given_back(
    redis_client: Redis, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix)
    rule = policy(max_concurrency=1)
    await limiter.acquire("warm-up", rule)  # connects and loads the script
    waiting = asyncio.create_task(limiter.acquire("k", rule))
    await asyncio.sleep(0)  # its command is queued; the caller gives up
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The command ran all the same; its permit goes back once the reply comes, so the one
    # slot is free again long before the lease would expire (120 s).
    deadline = time.monotonic() + DEADLINE_S
    while not (grant := await limiter.acquire("k", rule)).granted:
        assert time.monotonic() < deadline, "the abandoned permit was never given back"
        await asyncio.sleep(grant.retry_after_s)


async def test_commands_issued_while_one_is_on_the_wire_share_the_next_request(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    limiter = RedisRateLimiter(client, prefix=redis_prefix)
    rule = policy()
    await limiter.acquire("warm-up", rule)  # connects and loads the script
    before = len(counter.sent)
    grants = await asyncio.gather(*(limiter.acquire(f"k{i}", rule) for i in range(50)))
    assert all(g.granted for g in grants)
    assert len(counter.sent) - before <= 2  # the first alone, or with the rest; never 50


async def test_the_server_runs_one_command_per_batch(throwaway_redis: RedisServer) -> None:
    seen = RedisSeenSet.from_url(throwaway_redis.url)
    try:
        await seen.add_new("ex-1", ["warm-up"])
        admin = Redis.from_url(throwaway_redis.url)
        await admin.config_resetstat()
        await seen.add_new("ex-1", [f"k{i}" for i in range(500)])
        stats = await admin.info("commandstats")
        await admin.aclose()
    finally:
        await seen.close()
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert stats["cmdstat_hsetnx"]["calls"] == 500  # run inside the script, not sent


# -- a reply lost after the server acted: the client's retry gets the first answer


async def test_a_retried_add_new_is_not_told_its_own_keys_were_seen(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    seen = RedisSeenSet(client, prefix=redis_prefix)
    await seen.add_new("ex-1", ["a"])
    counter.lose_next_reply = True
    before = len(counter.sent)
    flags = await seen.add_new("ex-1", ["a", "b", "c"])
    # The script ran, its reply was lost, the client reconnected and sent it again.
    assert counter.sent[before:].count("EVALSHA") == 2
    assert flags == [False, True, True]
    assert await seen.add_new("ex-1", ["b", "c"]) == [False, False]


async def test_a_retried_acquire_takes_one_permit(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    limiter = RedisRateLimiter(client, prefix=redis_prefix)
    rule = policy(rate_per_s=100.0, burst=2, max_concurrency=1)
    await limiter.acquire("warm-up", rule)  # connects and loads the script
    counter.lose_next_reply = True
    before = len(counter.sent)
    grant = await limiter.acquire("k", rule)
    assert counter.sent[before:].count("EVALSHA") == 2
    assert grant.granted
    assert await client.zcard(limiter.keys("k")[1]) == 1  # one lease, not two
    await limiter.release("k", grant.lease_id)
    assert (await limiter.acquire("k", rule)).granted  # the burst's second permit is left


# -- TTLs


async def test_a_seen_set_expires_unless_written(redis_client: Redis, redis_prefix: str) -> None:
    # Every call goes to Redis here (nothing is answered from the process's own claims).
    seen = RedisSeenSet(redis_client, prefix=redis_prefix, ttl_s=100.0, known_claims=0)
    await seen.add_new("ex-1", ["a"])
    key = seen.key("ex-1")
    assert 99_000 < await redis_client.pttl(key) <= 100_000
    await redis_client.pexpire(key, 5_000)
    await seen.add_new("ex-1", ["a"])  # a write, even of nothing new, refreshes it
    assert 99_000 < await redis_client.pttl(key) <= 100_000


async def test_keys_claimed_here_are_answered_without_a_round_trip(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    clock = FakeClock()
    seen = RedisSeenSet(client, prefix=redis_prefix, ttl_s=100.0, clock=clock)
    await seen.add_new("warm-up", ["x"])  # connects and loads the script
    keys = [f"http://site.test/{i}" for i in range(50)]
    assert await round_trips(counter, seen.add_new("ex-1", keys, claimer="p1")) == (1, [True] * 50)
    # Another parent finds them claimed, without asking Redis.
    assert await round_trips(counter, seen.add_new("ex-1", keys, claimer="p2")) == (0, [False] * 50)
    # Another worker asks Redis, which says who holds them; then it answers them itself,
    # except to their holder.
    other = RedisSeenSet(client, prefix=redis_prefix)
    assert await round_trips(counter, other.add_new("ex-1", keys[:3], claimer="p2")) == (
        1,
        [False] * 3,
    )
    assert await round_trips(counter, other.add_new("ex-1", keys[:3], claimer="p4")) == (
        0,
        [False] * 3,
    )
    assert await round_trips(counter, other.add_new("ex-1", keys[:1], claimer="p1")) == (1, [True])
    # Their own claimer is told they are its own again, by Redis (a redelivered parent).
    assert await round_trips(counter, seen.add_new("ex-1", keys[:2], claimer="p1")) == (
        1,
        [True, True],
    )
    # Only what is not known goes: one new key among known ones is one round trip.
    trips, flags = await round_trips(counter, seen.add_new("ex-1", [*keys, "new"], claimer="p2"))
    assert (trips, flags) == (1, [False] * 50 + [True])
    # Discarded keys may be claimed again, by anyone; another execution knows none of them.
    await seen.discard("ex-1", keys[:5])
    assert await seen.add_new("ex-1", keys[:6], claimer="p3") == [True] * 5 + [False]
    assert await seen.add_new("ex-2", keys[:1], claimer="p3") == [True]


async def test_a_claimer_with_a_line_break_is_refused(
    redis_client: Redis, redis_prefix: str
) -> None:
    seen = RedisSeenSet(redis_client, prefix=redis_prefix)
    with pytest.raises(InvalidInputError, match="line breaks"):
        await seen.add_new("ex-1", ["a"], claimer="p\n1")


async def test_a_set_answered_without_redis_is_still_kept_alive(
    wire: tuple[Redis, type[WireConnection]], redis_prefix: str
) -> None:
    client, counter = wire
    clock = FakeClock()
    seen = RedisSeenSet(client, prefix=redis_prefix, ttl_s=100.0, clock=clock)
    await seen.add_new("ex-1", ["a"], claimer="p1")
    key = seen.key("ex-1")
    await client.pexpire(key, 5_000)
    assert await round_trips(counter, seen.add_new("ex-1", ["a"], claimer="p2")) == (0, [False])
    assert await client.pttl(key) <= 5_000
    clock.advance(10.0)  # a tenth of the TTL since this process last wrote the set
    assert await round_trips(counter, seen.add_new("ex-1", ["a"], claimer="p2")) == (1, [False])
    assert 99_000 < await client.pttl(key) <= 100_000
    assert await round_trips(counter, seen.add_new("ex-1", ["a"], claimer="p2")) == (0, [False])
    # Forgotten, the execution is new again, here as in Redis.
    await seen.forget("ex-1")
    assert await seen.add_new("ex-1", ["a"], claimer="p2") == [True]


async def test_no_key_is_kept_forever(redis_client: Redis, redis_prefix: str) -> None:
    seen = RedisSeenSet(redis_client, prefix=redis_prefix)
    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix, keep_extra_s=5.0)
    await seen.add_new("ex-1", ["a", "b"])
    grant = await limiter.acquire("ex-1|site.test", policy(lease_ttl_s=30.0))
    assert grant.granted
    keys = [key async for key in redis_client.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 4  # the set, its receipt, the limiter's state and lease set
    for key in keys:
        assert await redis_client.pttl(key) > 0, key
    state, leases = limiter.keys("ex-1|site.test")
    assert 30_000 < await redis_client.pttl(leases) <= 35_000  # the lease, plus the margin
    assert abs(await redis_client.pttl(state) - await redis_client.pttl(leases)) < 100


async def test_key_prefixes_are_namespaces(redis_client: Redis, redis_prefix: str) -> None:
    tenant_a = RedisSeenSet(redis_client, prefix=f"{redis_prefix}a:")
    tenant_b = RedisSeenSet(redis_client, prefix=f"{redis_prefix}b:")
    assert await tenant_a.add_new("ex-1", ["a"]) == [True]
    assert await tenant_b.add_new("ex-1", ["a"]) == [True]
    limiter_a = RedisRateLimiter(redis_client, prefix=f"{redis_prefix}a:")
    limiter_b = RedisRateLimiter(redis_client, prefix=f"{redis_prefix}b:")
    rule = policy(max_concurrency=1)
    assert (await limiter_a.acquire("k", rule)).granted
    assert (await limiter_b.acquire("k", rule)).granted


# -- Redis's clock, shared by every worker


async def test_workers_share_limits_on_the_servers_clock(redis_url: str, redis_prefix: str) -> None:
    worker_a = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    worker_b = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    try:
        rule = policy(rate_per_s=10.0, burst=2)
        assert (await worker_a.acquire("rate", rule)).granted
        assert (await worker_b.acquire("rate", rule)).granted
        denied = await worker_a.acquire("rate", rule)
        assert not denied.granted
        assert 0 < denied.retry_after_s <= 0.1
        # Asking again when told to is the protocol; the hint comes from the server's clock.
        told_at = time.monotonic()
        grant = denied
        while not grant.granted:
            assert time.monotonic() - told_at < DEADLINE_S
            await asyncio.sleep(grant.retry_after_s)
            grant = await worker_b.acquire("rate", rule)
        assert time.monotonic() - told_at >= denied.retry_after_s - 0.005

        capped = policy(max_concurrency=1)
        held = await worker_a.acquire("slots", capped)
        assert held.granted
        assert not (await worker_b.acquire("slots", capped)).granted
        await worker_a.release("slots", held.lease_id)
        assert (await worker_b.acquire("slots", capped)).granted
    finally:
        await worker_a.close()
        await worker_b.close()


# -- outages


async def test_unavailable_redis_is_retryable_and_named_then_recovers(
    throwaway_redis: RedisServer,
) -> None:
    options = RedisOptions(socket_timeout_s=1.0, connect_timeout_s=1.0, pool_timeout_s=1.0)
    seen = RedisSeenSet.from_url(throwaway_redis.url, options=options)
    limiter = RedisRateLimiter.from_url(throwaway_redis.url, options=options)
    rule = policy(max_concurrency=1)
    try:
        assert await seen.add_new("ex-1", ["a"]) == [True]
        lease = (await limiter.acquire("k", rule)).lease_id
        await asyncio.to_thread(throwaway_redis.kill)

        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: seen.add_new("ex-1", ["b"]),
            lambda: seen.discard("ex-1", ["a"]),
            lambda: seen.forget("ex-1"),
            lambda: limiter.acquire("k", rule),
            lambda: limiter.release("k", lease),
        ]
        for attempt in attempts:
            with pytest.raises(RetryableError) as caught:
                await attempt()
            assert throwaway_redis.address in str(caught.value)
            assert caught.value.error_class == "redis_unavailable"

        await asyncio.to_thread(throwaway_redis.start)  # empty: it kept nothing on disk
        assert await eventually(lambda: seen.add_new("ex-1", ["a", "b"]), "seen-set") == [
            True,
            True,
        ]
        grant: Grant = await eventually(lambda: limiter.acquire("k", rule), "limiter")
        assert grant.granted
    finally:
        await seen.close()
        await limiter.close()


async def test_a_stalled_redis_times_out_as_retryable(throwaway_redis: RedisServer) -> None:
    options = RedisOptions(socket_timeout_s=0.3, pool_timeout_s=0.3)
    seen = RedisSeenSet.from_url(throwaway_redis.url, options=options)
    limiter = RedisRateLimiter.from_url(throwaway_redis.url, options=options)
    try:
        assert await seen.add_new("ex-1", ["a"]) == [True]
        assert (await limiter.acquire("k", policy())).granted
        throwaway_redis.pause()
        started = time.monotonic()
        with pytest.raises(RetryableError, match="TimeoutError") as caught:
            await seen.add_new("ex-1", ["b"])
        assert throwaway_redis.address in str(caught.value)
        with pytest.raises(RetryableError, match=throwaway_redis.address):
            await limiter.acquire("k", policy())
        assert time.monotonic() - started < 3.0  # the socket timeout, not a hang
        throwaway_redis.resume()
        assert await eventually(lambda: seen.add_new("ex-1", ["c"]), "seen-set") == [True]
        assert (await eventually(lambda: limiter.acquire("k", policy()), "limiter")).granted
    finally:
        await seen.close()
        await limiter.close()


async def test_a_restart_that_loses_data(throwaway_redis: RedisServer) -> None:
    """Documented behaviour: Redis is not the record of truth. After it comes back empty,
    URLs are new again, except to the process that claimed them, which still knows (the
    StateStore and the export's dedup keep the output exact), and limits start afresh;
    neither adapter needs restarting."""
    seen = RedisSeenSet.from_url(throwaway_redis.url)
    limiter = RedisRateLimiter.from_url(throwaway_redis.url)
    rule = policy(max_concurrency=1)
    try:
        assert await seen.add_new("ex-1", ["a", "b"]) == [True, True]
        assert await seen.add_new("ex-1", ["a", "b"]) == [False, False]
        assert (await limiter.acquire("k", rule)).granted  # held by a worker that dies too
        assert not (await limiter.acquire("k", rule)).granted

        await asyncio.to_thread(throwaway_redis.restart)

        # The first call after the restart works: dead pooled connections are replaced.
        # What this process claimed it still knows; what it never claimed is new again.
        assert await seen.add_new("ex-1", ["a", "b", "c"]) == [False, False, True]
        other = RedisSeenSet.from_url(throwaway_redis.url)  # another worker's
        try:
            assert await other.add_new("ex-1", ["a", "b", "c"]) == [True, True, False]
        finally:
            await other.close()
        assert (await limiter.acquire("k", rule)).granted  # and the script is loaded again
        assert not (await limiter.acquire("k", rule)).granted  # and it limits again
    finally:
        await seen.close()
        await limiter.close()


async def test_a_full_redis_that_may_not_evict_is_an_outage_not_a_failed_page(
    throwaway_redis: RedisServer,
) -> None:
    """Under ``noeviction`` a full Redis refuses writes: the seen set says Redis is
    unavailable (the task goes back to the queue untried) rather than raising an error that
    would fail the page and lose its links."""
    admin = Redis.from_url(throwaway_redis.url)
    seen = RedisSeenSet.from_url(throwaway_redis.url)
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1mb")
        with pytest.raises(RetryableError) as refused:
            for batch in range(200):  # well past 1 MB of keys
                await seen.add_new("ex-full", [f"https://a.test/{batch}/{i}" for i in range(500)])
        assert refused.value.error_class == "redis_unavailable"
        assert "OutOfMemoryError" in str(refused.value)
    finally:
        await seen.close()
        await admin.aclose()
