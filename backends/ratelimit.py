"""The RateLimiter port: per-host permits shared by every worker of an execution.

A permit is checked against three limits at once: a rate with a burst (GCRA: ``burst``
requests may go at once, then ``rate_per_s``), a minimum interval between two permits for
one key (``delay_ms`` in workflows), and a concurrency cap. A granted permit holds a lease on
a concurrency slot until released; leases expire after ``lease_ttl_s``, so a dead worker's
slot frees itself.

Guarantees every adapter keeps: in any one-second window a key gets at most
``rate_per_s + burst`` permits, and never more than ``max_concurrency`` unreleased,
unexpired leases. A denial that is due to the rate or the interval says exactly when to ask
again (``retry_after_s``); one due to the concurrency cap gives a polling hint.
"""

from __future__ import annotations

import abc

import msgspec

from backends.errors import InvalidInputError


class RatePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The limits of one key (a host within an execution)."""

    rate_per_s: float
    burst: int
    min_interval_s: float
    max_concurrency: int
    lease_ttl_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise InvalidInputError(f"rate_per_s must be > 0, not {self.rate_per_s}")
        if self.burst < 1:
            raise InvalidInputError(f"burst must be >= 1, not {self.burst}")
        if not self.min_interval_s >= 0:
            raise InvalidInputError(f"min_interval_s must be >= 0, not {self.min_interval_s}")
        if self.max_concurrency < 1:
            raise InvalidInputError(f"max_concurrency must be >= 1, not {self.max_concurrency}")
        if not self.lease_ttl_s > 0:
            raise InvalidInputError(f"lease_ttl_s must be > 0, not {self.lease_ttl_s}")


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``acquire``: a permit with its lease, or when to ask again."""

    granted: bool
    retry_after_s: float = 0.0
    lease_id: str | None = None


class RateLimiter(abc.ABC):
    """Permits per key, across processes."""

    @abc.abstractmethod
    async def acquire(self, key: str, policy: RatePolicy) -> Grant:
        """Take a permit for ``key`` now if every limit allows it; never waits."""

    @abc.abstractmethod
    async def release(self, key: str, lease_id: str | None) -> None:
        """Give back a granted permit's concurrency slot (unknown or expired: nothing)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
