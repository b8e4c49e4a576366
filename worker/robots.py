"""robots.txt, fetched once per origin and cached, parsed by Protego (Scrapy's parser).

A task asks once (``RobotsCache.verdict``): may it be fetched, and how slowly. A robots.txt
that cannot be read never blocks the crawl.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from protego import Protego

from backends.clock import Clock
from backends.ratelimit import RatePolicy
from workflows.urls import origin_of

log = logging.getLogger(__name__)

# Fetches a robots.txt URL: (status, body) or raises OSError/TimeoutError when unreachable.
RobotsFetch = Callable[[str, str], Awaitable[tuple[int, str]]]

_NO_RULES = Protego.parse("")


@dataclass(frozen=True, slots=True)
class RobotsVerdict:
    """What robots.txt says of one URL for one user agent: whether it may be fetched, and
    the Crawl-delay it asks for (None: none)."""

    allowed: bool
    crawl_delay_s: float | None = None

    def slowed(self, policy: RatePolicy) -> RatePolicy:
        """``policy`` with its minimum interval raised to the Crawl-delay, if that is longer."""
        delay = self.crawl_delay_s
        if delay and delay > policy.min_interval_s:
            return msgspec.structs.replace(policy, min_interval_s=delay)
        return policy


# What a robots.txt that cannot be read says: everything allowed, no delay.
_UNREADABLE = RobotsVerdict(allowed=True)


@dataclass(slots=True)
class _Entry:
    rules: Protego
    expires_at: float


class RobotsCache:
    """Answers "may this user agent fetch this URL" with one robots.txt fetch per origin.

    A 4xx robots.txt means no rules (RFC 9309 §2.3.1.3); an unreachable one or a 5xx is
    treated as "allow" but cached only briefly so that the next pages ask again.
    """

    def __init__(self, fetch: RobotsFetch, clock: Clock, ttl_s: float = 3600.0) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[Protego]] = {}

    async def _rules(self, origin: str, user_agent: str) -> Protego:
        entry = self._entries.get(origin)
        if entry is not None and entry.expires_at > self._clock.now():
            return entry.rules
        pending = self._inflight.get(origin)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Protego] = asyncio.get_running_loop().create_future()
        self._inflight[origin] = future
        try:
            rules, ttl = await self._load(origin, user_agent)
            self._entries[origin] = _Entry(rules, self._clock.now() + ttl)
            future.set_result(rules)
            return rules
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[origin]

    async def _load(self, origin: str, user_agent: str) -> tuple[Protego, float]:
        try:
            status, body = await self._fetch(f"{origin}/robots.txt", user_agent)
        except (OSError, TimeoutError) as exc:
            log.warning("robots.txt of %s unreachable (%s): allowing for now", origin, exc)
            return _NO_RULES, 60.0
        if 200 <= status < 300:
            return Protego.parse(body), self._ttl_s
        if 400 <= status < 500:
            return _NO_RULES, self._ttl_s
        return _NO_RULES, 60.0

    def needs_fetch(self, url: str) -> bool:
        """Whether answering for ``url`` would fetch its origin's robots.txt now (nothing
        cached, expired, and no fetch of it under way)."""
        origin = _origin(url)
        entry = self._entries.get(origin)
        if entry is not None and entry.expires_at > self._clock.now():
            return False
        return origin not in self._inflight

    async def verdict(self, url: str, user_agent: str) -> RobotsVerdict:
        """Whether ``user_agent`` may fetch ``url`` and the Crawl-delay it is asked to keep,
        from one look at the origin's rules. Never raises: a robots.txt that cannot be read
        (an error beyond the unreachable and 5xx ones ``_load`` settles) allows everything."""
        try:
            rules = await self._rules(_origin(url), user_agent)
            allowed = bool(rules.can_fetch(url, user_agent))
            delay = rules.crawl_delay(user_agent)
        except Exception as exc:
            log.warning("robots.txt check failed for %s: %s", url, exc)
            return _UNREADABLE
        return RobotsVerdict(allowed, float(delay) if delay is not None else None)

    async def allowed(self, url: str, user_agent: str) -> bool:
        """Whether ``user_agent`` may fetch ``url`` (raises what reading robots.txt raised)."""
        rules = await self._rules(_origin(url), user_agent)
        return bool(rules.can_fetch(url, user_agent))

    async def sitemaps(self, url: str, user_agent: str) -> list[str]:
        """The ``Sitemap:`` lines of the robots.txt of ``url``'s origin, as written (they
        may be relative); [] when it has none or cannot be read, which never fails a crawl.
        The same cached rules the verdicts come from: one fetch serves both."""
        try:
            rules = await self._rules(_origin(url), user_agent)
            return [str(line) for line in rules.sitemaps]
        except Exception as exc:
            log.warning("robots.txt sitemaps unreadable for %s: %s", url, exc)
            return []


def _origin(url: str) -> str:
    """robots.txt applies to one origin (RFC 9309 §2.3): scheme, host and port."""
    return origin_of(url)
