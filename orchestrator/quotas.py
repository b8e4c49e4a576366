"""Per-key and per-tenant quotas of the API: no tenant's traffic starves another's.

- Every authenticated request takes a permit from its key's rate (GCRA over the shared
  RateLimiter, so every orchestrator instance counts against one budget): beyond it, 429
  with ``Retry-After``.
- Previews fetch a stranger's URL and run its workflow: a tenant gets a rate of them and a
  few at once.
- Event streams stay open as long as an execution runs: a tenant gets a few at once (per
  orchestrator instance; streams end when a client goes away).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from litestar.exceptions import TooManyRequestsException

from backends.ratelimit import RateLimiter, RatePolicy

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class Quotas:
    api_requests_per_s: float = 20.0
    api_burst: int = 40
    previews_per_s: float = 1.0
    preview_burst: int = 5
    previews_at_once: int = 2
    streams_at_once: int = 10
    admissions_at_once: int = 1  # workflow checks in helper processes, per tenant


def too_many(what: str, retry_after_s: float) -> TooManyRequestsException:
    seconds = max(1, math.ceil(retry_after_s))
    return TooManyRequestsException(
        detail=f"{what}; retry in {seconds} s", headers={"Retry-After": str(seconds)}
    )


async def take_request_permit(limiter: RateLimiter, key_hash: str, quotas: Quotas) -> None:
    """One request of ``key_hash``'s budget, or a 429 saying when to come back."""
    policy = RatePolicy(
        rate_per_s=quotas.api_requests_per_s,
        burst=quotas.api_burst,
        min_interval_s=0.0,
        max_concurrency=1_000_000,
        lease_ttl_s=1.0,
    )
    # Only the rate matters here: the permit's lease (no real concurrency cap) is left to
    # expire after its second instead of costing every request a second round trip.
    grant = await limiter.acquire(f"api-key:{key_hash}", policy)
    if not grant.granted:
        raise too_many("this API key is over its request rate", grant.retry_after_s)


@contextlib.asynccontextmanager
async def preview_slot(limiter: RateLimiter, tenant: str, quotas: Quotas) -> AsyncIterator[None]:
    """A preview within the tenant's rate and concurrency, held while the block runs."""
    policy = RatePolicy(
        rate_per_s=quotas.previews_per_s,
        burst=quotas.preview_burst,
        min_interval_s=0.0,
        max_concurrency=quotas.previews_at_once,
        lease_ttl_s=300.0,
    )
    key = f"preview:{tenant}"
    grant = await limiter.acquire(key, policy)
    if not grant.granted:
        raise too_many(
            f"previews are limited to {quotas.previews_at_once} at once and "
            f"{quotas.previews_per_s:g} per second per tenant",
            grant.retry_after_s,
        )
    try:
        yield
    finally:
        await limiter.release(key, grant.lease_id)


class StreamSlots:
    """How many event streams each tenant has open on this instance."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def hold(self, tenant: str, limit: int, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """``stream``, counted against ``tenant``'s open streams until it ends. The slot is
        taken now (a 429 before any response starts) and given back when the stream ends
        or its client goes away."""
        if self._open[tenant] >= limit:
            raise too_many(f"{limit} event streams are already open for this tenant", 5.0)
        self._open[tenant] += 1
        return self._counted(tenant, stream)

    async def _counted(self, tenant: str, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        try:
            async for item in stream:
                yield item
        finally:
            self._open[tenant] -= 1
            if self._open[tenant] <= 0:
                del self._open[tenant]


class TenantGate:
    """At most ``limit`` jobs of each tenant at once on this instance. A tenant's next job
    waits for one of its own to end, at most ``wait_s``, then gets a 429: however many a
    tenant sends, the others' jobs never queue behind them."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str, limit: int, wait_s: float, what: str) -> AsyncIterator[None]:
        gate = self._gates.setdefault(tenant, asyncio.Semaphore(max(1, limit)))
        self._users[tenant] += 1
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await gate.acquire()
            except TimeoutError:
                raise too_many(f"{limit} {what} of this tenant already running", 1.0) from None
            try:
                yield
            finally:
                gate.release()
        finally:
            self._users[tenant] -= 1
            if self._users[tenant] <= 0:
                del self._users[tenant]
                del self._gates[tenant]
