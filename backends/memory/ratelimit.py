"""MemoryRateLimiter: the RateLimiter of embedded mode (GCRA, interval, leases).

GCRA keeps one number per key, the theoretical arrival time (TAT): the moment the key's
allowance would be fully used up if permits had been spent at exactly the rate. A permit at
``now`` is allowed while ``TAT - now <= (burst - 1) * T`` (T = 1 / rate), and moves TAT on by
T. That admits ``burst`` permits at once and then one per T, and answers a denial with the
exact wait. Each ``acquire`` checks every limit before changing anything, and does not
await, so it is atomic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from backends.clock import Clock, SystemClock
from backends.ratelimit import Grant, RateLimiter, RatePolicy

# Float slack: a caller that comes back after exactly retry_after_s must not be refused by
# a rounding error.
_EPSILON_S = 1e-9
# A caller refused for concurrency polls no faster than this, however high the rate.
_MIN_POLL_S = 0.05
# Every this many acquires, keys with nothing left to remember are dropped, so a broad crawl
# over many hosts does not keep them all.
_SWEEP_EVERY = 4096


@dataclass(slots=True)
class _KeyState:
    tat: float
    last_grant: float | None = None
    free_at: float = 0.0  # when neither rate nor interval constrains this key any more
    leases: dict[str, float] = field(default_factory=dict)  # lease id -> expiry


class MemoryRateLimiter(RateLimiter):
    """Permits per key for the workers of this process."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._keys: dict[str, _KeyState] = {}
        self._acquires = 0

    async def acquire(self, key: str, policy: RatePolicy) -> Grant:
        now = self._clock.now()
        self._acquires += 1
        if self._acquires % _SWEEP_EVERY == 0:
            self._sweep(now)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(tat=now)
        if state.leases:
            state.leases = {lid: exp for lid, exp in state.leases.items() if exp > now}

        interval = 1.0 / policy.rate_per_s
        tat = max(state.tat, now)
        wait_s = tat - now - (policy.burst - 1) * interval
        if state.last_grant is not None:
            wait_s = max(wait_s, state.last_grant + policy.min_interval_s - now)
        if wait_s > _EPSILON_S:
            return Grant(granted=False, retry_after_s=wait_s)
        if len(state.leases) >= policy.max_concurrency:
            # Nobody tells us when a slot is released; poll at the pace the rate allows,
            # and no later than the first lease expires.
            hint = max(interval, policy.min_interval_s, _MIN_POLL_S)
            soonest = min(state.leases.values()) - now
            return Grant(granted=False, retry_after_s=max(min(hint, soonest), _EPSILON_S))

        state.tat = tat + interval
        state.last_grant = now
        state.free_at = max(state.tat, now + policy.min_interval_s)
        lease_id = uuid.uuid4().hex
        state.leases[lease_id] = now + policy.lease_ttl_s
        return Grant(granted=True, lease_id=lease_id)

    async def release(self, key: str, lease_id: str | None) -> None:
        state = self._keys.get(key)
        if state is not None and lease_id is not None:
            state.leases.pop(lease_id, None)

    def _sweep(self, now: float) -> None:
        idle = [
            key
            for key, state in self._keys.items()
            if state.free_at <= now and all(exp <= now for exp in state.leases.values())
        ]
        for key in idle:
            del self._keys[key]
