"""The politeness permit: leave to send one request to a host, held as an async context
manager.

A permit is one grant from the execution's own policy, keyed by execution and origin
(scheme, host and port: ``http://a.test:8080`` and ``https://a.test`` are two sites), and,
when the deployment sets a ceiling per host (``TRAWL_HOST_MAX_RPS``), one from that shared
key too, per host name whatever the scheme or port (it protects the machine behind the
name), across every execution; if it is at its ceiling the first is given back. A denial
that is due soon is waited for in place (up to ``max_inline_wait_s`` at a time); a longer
one is a ``Wait``, for the task to be handed back to the queue.

    permit = await politeness.acquire(execution_id, url, policy)
    if isinstance(permit, Wait): ...  # hand the task back after permit.retry_after_s
    async with permit:  # given back on the way out, whatever happens inside
        ...
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType

from backends.clock import Clock
from backends.errors import RetryableError
from backends.ratelimit import Grant, RateLimiter, RatePolicy
from workflows.urls import host_of, origin_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Wait:
    """No permit before ``retry_after_s``, longer than a worker waits in place (or the
    worker is stopping: 0)."""

    retry_after_s: float


class Permit:
    """Grants held for one request; leaving ``async with`` gives them back."""

    __slots__ = ("_grants", "_politeness")

    def __init__(self, politeness: Politeness | None, grants: list[tuple[str, Grant]]) -> None:
        self._politeness = politeness
        self._grants = grants

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._politeness is not None:
            await self._politeness.release(self._grants)


# Nothing held, nothing to give back (e.g. robots.txt is cached: no request to make).
NO_PERMIT = Permit(None, [])


class Politeness:
    """Permits from a RateLimiter for the hosts a worker's tasks ask for."""

    def __init__(
        self,
        limiter: RateLimiter,
        clock: Clock,
        *,
        max_inline_wait_s: float,
        host_policy: RatePolicy | None = None,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._max_inline_wait_s = max_inline_wait_s
        # The operator's ceiling per host across every execution and tenant (None: only
        # each execution's own politeness applies, as in `trawl run`).
        self._host_policy = host_policy
        self._stopping = asyncio.Event()

    def stop_waiting(self) -> None:
        """The worker is stopping: waits for a permit end at once, as a ``Wait`` of 0."""
        self._stopping.set()

    async def acquire(self, execution_id: str, url: str, policy: RatePolicy) -> Permit | Wait:
        """A permit to send one request to ``url``'s host under ``policy``, or how long to
        wait for one. A RetryableError is the limiter's own backend failing."""
        origin = origin_of(url)  # per site: scheme, host and port
        key = f"{execution_id}|{origin}"
        while True:
            grant = await self._limiter.acquire(key, policy)
            taken = [(key, grant)]
            if grant.granted and self._host_policy is not None:
                shared = f"host|{host_of(url)}"
                host_grant = await self._limiter.acquire(shared, self._host_policy)
                if host_grant.granted:
                    taken.append((shared, host_grant))
                else:  # the host is at the deployment's ceiling: give this one back
                    await self._limiter.release(key, grant.lease_id)
                    grant = host_grant
            if grant.granted:
                return Permit(self, taken)
            if self._stopping.is_set():
                return Wait(0.0)
            if grant.retry_after_s > self._max_inline_wait_s:
                return Wait(grant.retry_after_s)
            await self._pause(grant.retry_after_s)

    async def release(self, grants: list[tuple[str, Grant]]) -> None:
        """Give grants back. A limiter that cannot be reached is no reason to redo the
        task: an unreleased lease frees itself after its TTL."""
        for key, grant in grants:
            try:
                await self._limiter.release(key, grant.lease_id)
            except RetryableError as exc:
                log.warning("%s; the lease will expire on its own", exc)

    async def _pause(self, seconds: float) -> None:
        """Sleep on the clock, cut short by ``stop_waiting``."""
        if self._stopping.is_set():
            return
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleep, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            stopping.cancel()
