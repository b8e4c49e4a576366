"""RedisRateLimiter: the RateLimiter of distributed mode, one Lua script per decision.

``acquire`` is a single EVALSHA (one round trip) running acquire.lua, which is the memory
limiter's GCRA, interval and lease logic transcribed, so both pass one contract suite.
Per key it keeps a hash (``tat``, ``last``) and a sorted set of leases scored by expiry;
both carry a TTL covering what they still constrain, so idle hosts cost nothing.
``release`` is one ZREM. The caller picks the lease id, so an ``acquire`` the client sends
twice (a retry after a lost reply) is recognised by the script and takes one permit.

Both go through a ``Batcher`` (backends/redis/batch.py): what a worker's tasks ask while a
round trip is in flight shares the next one, a pipeline, in the order asked. An acquire
whose caller was cancelled while it was on the wire gives its permit back when the reply
comes.

Time. By default the script reads Redis's own clock (``TIME``): every worker then judges
by one clock, so permits stay spaced even when the workers' hosts disagree about the time,
and nothing depends on a worker's monotonic clock, which means nothing on another host.
The alternative, passing the caller's ``now`` in, would let clock skew between workers
shrink or stretch the intervals by the skew. An injected ``clock`` is still accepted, for
one reason: tests. The contract suite drives a FakeClock through minutes of simulated
traffic and checks retry hints to the microsecond, which real time cannot do; given a
clock, the script uses its ``now`` instead of ``TIME`` and is otherwise the same code.
Only inject a clock that every caller of these keys shares (one test process); a
SystemClock is refused, since its monotonic time means nothing to another host. Key TTLs
are in Redis's real time either way, with a margin (``keep_extra_s``) so a fake clock that
runs slower than real time loses no state.

If Redis loses its data, limits restart from empty (a burst may go out again, leases are
forgotten); the script is reloaded on the first call (NOSCRIPT is handled by redis-py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources

from redis.asyncio import Redis

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.ratelimit import Grant, RateLimiter, RatePolicy
from backends.redis.batch import Batcher, Script
from backends.redis.client import (
    DEFAULT_PREFIX,
    RedisOptions,
    address_of,
    check_prefix,
    connect,
    retryable,
)

ACQUIRE_LUA = resources.files("backends.redis").joinpath("acquire.lua").read_text(encoding="utf-8")


class RedisRateLimiter(RateLimiter):
    """Permits per key, shared by every worker that uses this Redis and prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        keep_extra_s: float = 60.0,
        owns_client: bool = False,
    ) -> None:
        if isinstance(clock, SystemClock):
            raise InvalidInputError(
                "RedisRateLimiter keeps time by Redis's clock; pass clock=None, not a "
                "SystemClock (its monotonic time differs on every host)"
            )
        if not keep_extra_s >= 0:
            raise InvalidInputError(f"keep_extra_s must be >= 0, not {keep_extra_s}")
        self._redis = redis
        self._prefix = check_prefix(prefix)
        self._clock = clock
        self._keep_extra_ms = int(keep_extra_s * 1000)
        self._owns_client = owns_client
        self._address = address_of(redis)
        self._acquire = Script.of(ACQUIRE_LUA)
        self._batcher = Batcher(redis)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, options: RedisOptions | None = None
    ) -> RedisRateLimiter:
        """A limiter on Redis's clock with its own client, closed by ``close``."""
        return cls(connect(url, options), prefix=prefix, owns_client=True)

    def keys(self, key: str) -> tuple[str, str]:
        """The state hash and lease set of ``key`` (braces: one cluster slot for both)."""
        base = f"{self._prefix}rate:{{{key}}}"
        return base, f"{base}:leases"

    async def acquire(self, key: str, policy: RatePolicy) -> Grant:
        lease_id = uuid.uuid4().hex
        now = "" if self._clock is None else repr(self._clock.now())
        args: list[str | int] = [
            now,
            repr(1.0 / policy.rate_per_s),
            policy.burst,
            repr(policy.min_interval_s),
            policy.max_concurrency,
            repr(policy.lease_ttl_s),
            lease_id,
            self._keep_extra_ms,
        ]
        keys = self.keys(key)

        def orphaned(answer: Sequence[int | bytes | str]) -> None:
            # The caller was cancelled while its acquire was on the wire: nobody will use
            # the permit, so it goes back at once rather than when its lease expires.
            if _decode(answer)[0]:
                self._batcher.send_nowait(
                    "ZREM", keys[1], lease_id, what=f"giving back an unused permit of {key}"
                )

        with retryable(self._address, "rate limiter acquire"):
            answer = await self._batcher.run_script(
                self._acquire, list(keys), args, orphaned=orphaned
            )
        granted, retry_after = _decode(answer)
        if granted:
            return Grant(granted=True, lease_id=lease_id)
        return Grant(granted=False, retry_after_s=retry_after)

    async def release(self, key: str, lease_id: str | None) -> None:
        if lease_id is None:
            return
        with retryable(self._address, "rate limiter release"):
            await self._batcher.call("ZREM", self.keys(key)[1], lease_id)

    async def close(self) -> None:
        await self._batcher.close()  # permits given back on the way out reach Redis
        if self._owns_client:
            await self._redis.aclose()


def _decode(answer: Sequence[int | bytes | str]) -> tuple[bool, float]:
    granted, retry_after = answer
    return bool(granted), float(retry_after)
