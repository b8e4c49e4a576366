"""RateLimiter contract: rate with burst, minimum interval, concurrency cap, lease expiry.

The simulations drive the clock from event to event (requesters retrying after the delay
they were told, workers releasing after a fetch), so they run many seconds of traffic in
no real time and check the guarantees over every window.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

from backends.clock import FakeClock
from backends.errors import InvalidInputError
from backends.ratelimit import RateLimiter, RatePolicy
from tests.contract.conftest import Env


def policy(
    rate_per_s: float = 1000.0,
    burst: int = 1000,
    min_interval_s: float = 0.0,
    max_concurrency: int = 1000,
    lease_ttl_s: float = 120.0,
) -> RatePolicy:
    return RatePolicy(
        rate_per_s=rate_per_s,
        burst=burst,
        min_interval_s=min_interval_s,
        max_concurrency=max_concurrency,
        lease_ttl_s=lease_ttl_s,
    )


async def advance_to(env: Env[RateLimiter], t: float) -> None:
    if t <= env.clock.now():
        return
    if isinstance(env.clock, FakeClock):
        env.clock.advance(t - env.clock.now())  # nothing sleeps here: no need to yield
    else:
        await env.advance(t - env.clock.now())


@dataclass
class Simulation:
    grant_times: list[float] = field(default_factory=list)
    max_in_flight: int = 0


async def simulate(
    env: Env[RateLimiter],
    key: str,
    rule: RatePolicy,
    *,
    requesters: int,
    duration_s: float,
    hold_s: tuple[float, float],
    seed: int = 1,
) -> Simulation:
    """Requesters ask, hold a granted permit for a random time, release, ask again; a
    denied one asks again exactly when it was told to."""
    limiter = env.adapter
    rng = random.Random(seed)
    start = env.clock.now()
    seq = itertools.count()
    events: list[tuple[float, int, str | None]] = []
    for _ in range(requesters):
        heapq.heappush(events, (start + rng.uniform(0, 0.01), next(seq), None))
    result = Simulation()
    in_flight = 0
    while events:
        at, _, lease = heapq.heappop(events)
        if at > start + duration_s:
            break
        await advance_to(env, at)
        if lease is not None:  # a fetch ends
            await limiter.release(key, lease)
            in_flight -= 1
            heapq.heappush(events, (env.clock.now(), next(seq), None))
            continue
        grant = await limiter.acquire(key, rule)
        if grant.granted:
            assert grant.lease_id is not None
            result.grant_times.append(env.clock.now() - start)
            in_flight += 1
            result.max_in_flight = max(result.max_in_flight, in_flight)
            release_at = env.clock.now() + rng.uniform(*hold_s)
            heapq.heappush(events, (release_at, next(seq), grant.lease_id))
        else:
            assert grant.retry_after_s > 0
            heapq.heappush(events, (env.clock.now() + grant.retry_after_s, next(seq), None))
    return result


def max_in_any_window(times: list[float], window_s: float = 1.0) -> int:
    times = sorted(times)
    best = 0
    end = 0
    for begin, t in enumerate(times):
        while end < len(times) and times[end] <= t + window_s:
            end += 1
        best = max(best, end - begin)
    return best


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 3), (2.0, 1), (0.5, 2), (20.0, 10)])
async def test_no_window_gets_more_than_rate_plus_burst(
    ratelimit_env: Env[RateLimiter], rate: float, burst: int
) -> None:
    duration_s = 20.0
    sim = await simulate(
        ratelimit_env,
        "ex-1:site.test",
        policy(rate_per_s=rate, burst=burst, max_concurrency=1000),
        requesters=30,
        duration_s=duration_s,
        hold_s=(0.01, 0.2),
    )
    assert max_in_any_window(sim.grant_times) <= rate + burst
    # And the limiter is not merely stingy: the rate is reached.
    assert len(sim.grant_times) >= rate * duration_s * 0.95


async def test_burst_goes_at_once_then_the_rate(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(rate_per_s=2.0, burst=4)
    grants = [await limiter.acquire("k", rule) for _ in range(5)]
    assert [g.granted for g in grants] == [True, True, True, True, False]
    assert grants[4].retry_after_s == pytest.approx(0.5, abs=1e-6)


async def test_retry_after_is_exact(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(rate_per_s=4.0, burst=1)
    assert (await limiter.acquire("k", rule)).granted
    denied = await limiter.acquire("k", rule)
    assert not denied.granted
    assert denied.retry_after_s == pytest.approx(0.25, abs=1e-6)
    await ratelimit_env.advance(denied.retry_after_s * 0.9)
    assert not (await limiter.acquire("k", rule)).granted
    await advance_to(ratelimit_env, ratelimit_env.clock.now() + denied.retry_after_s * 0.1)
    assert (await limiter.acquire("k", rule)).granted


async def test_min_interval_spaces_consecutive_grants(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(rate_per_s=100.0, burst=10, min_interval_s=0.5)
    assert (await limiter.acquire("k", rule)).granted
    denied = await limiter.acquire("k", rule)
    assert not denied.granted
    assert denied.retry_after_s == pytest.approx(0.5, abs=1e-6)
    await ratelimit_env.advance(0.4)
    again = await limiter.acquire("k", rule)
    assert not again.granted
    assert again.retry_after_s == pytest.approx(0.1, abs=1e-6)
    await ratelimit_env.advance(again.retry_after_s)
    assert (await limiter.acquire("k", rule)).granted


async def test_min_interval_holds_under_load(ratelimit_env: Env[RateLimiter]) -> None:
    sim = await simulate(
        ratelimit_env,
        "k",
        policy(rate_per_s=100.0, burst=50, min_interval_s=0.25, max_concurrency=100),
        requesters=20,
        duration_s=10.0,
        hold_s=(0.01, 0.05),
    )
    gaps = [b - a for a, b in itertools.pairwise(sim.grant_times)]
    assert min(gaps) >= 0.25 - 1e-6
    assert len(sim.grant_times) >= 10.0 / 0.25 * 0.95


async def test_concurrency_cap_holds_under_load(ratelimit_env: Env[RateLimiter]) -> None:
    sim = await simulate(
        ratelimit_env,
        "k",
        policy(rate_per_s=50.0, burst=5, max_concurrency=3),
        requesters=25,
        duration_s=20.0,
        hold_s=(0.1, 1.5),
        seed=5,
    )
    assert sim.max_in_flight == 3
    assert len(sim.grant_times) > 20.0 * 3 / 1.5  # slots are reused once released


async def test_release_frees_a_slot_at_once(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(max_concurrency=2)
    first = await limiter.acquire("k", rule)
    second = await limiter.acquire("k", rule)
    assert first.granted and second.granted
    assert first.lease_id != second.lease_id
    full = await limiter.acquire("k", rule)
    assert not full.granted
    assert full.retry_after_s > 0
    await limiter.release("k", first.lease_id)
    assert (await limiter.acquire("k", rule)).granted


async def test_release_is_forgiving(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(max_concurrency=1)
    grant = await limiter.acquire("k", rule)
    await limiter.release("k", grant.lease_id)
    await limiter.release("k", grant.lease_id)  # twice
    await limiter.release("k", "no-such-lease")
    await limiter.release("other-key", None)
    assert (await limiter.acquire("k", rule)).granted
    assert not (await limiter.acquire("k", rule)).granted  # a double release freed no extra


async def test_a_dead_workers_lease_expires(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(max_concurrency=1, lease_ttl_s=30.0)
    assert (await limiter.acquire("k", rule)).granted  # never released
    await ratelimit_env.advance(29.0)
    denied = await limiter.acquire("k", rule)
    assert not denied.granted
    assert denied.retry_after_s <= 1.0 + 1e-6  # the hint does not overshoot the expiry
    await ratelimit_env.advance(1.5)
    assert (await limiter.acquire("k", rule)).granted


async def test_keys_are_independent(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(rate_per_s=1.0, burst=1, max_concurrency=1)
    assert (await limiter.acquire("ex-1:a.test", rule)).granted
    assert (await limiter.acquire("ex-1:b.test", rule)).granted
    assert (await limiter.acquire("ex-2:a.test", rule)).granted
    assert not (await limiter.acquire("ex-1:a.test", rule)).granted


async def test_a_denial_consumes_nothing(ratelimit_env: Env[RateLimiter]) -> None:
    limiter = ratelimit_env.adapter
    rule = policy(rate_per_s=1.0, burst=2, max_concurrency=1)
    held = await limiter.acquire("k", rule)
    for _ in range(50):  # refused for concurrency, over and over
        assert not (await limiter.acquire("k", rule)).granted
    await limiter.release("k", held.lease_id)
    # The burst's second permit is still there.
    assert (await limiter.acquire("k", rule)).granted


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_per_s": 0.0},
        {"rate_per_s": float("nan")},
        {"burst": 0},
        {"min_interval_s": -1.0},
        {"max_concurrency": 0},
        {"lease_ttl_s": 0.0},
    ],
)
def test_bad_policies_are_invalid_input(bad: dict[str, float]) -> None:
    values: dict[str, float] = {
        "rate_per_s": 1.0,
        "burst": 1,
        "min_interval_s": 0.0,
        "max_concurrency": 1,
    }
    values.update(bad)
    with pytest.raises(InvalidInputError):
        RatePolicy(**values)  # type: ignore[arg-type]
