"""Proxies: which one a request goes through, and what a response says about it.

A workflow's ``proxies`` (workflows/spec.py) name a list of proxies, a provider URL that
answers one, or both. Each execution gets its own ``ProxyPool`` in each worker process,
built on the first task that needs it and dropped with the execution's context
(worker/context.py): health, rotation and resolved credentials never cross from one
execution, or one tenant, to another.

- **The list.** ``urls`` with their ``${secret:NAME}`` resolved from the execution's
  secrets, then the provider's lines (fetched through the guarded http client at first use,
  at most ``PROVIDER_MAX_BYTES`` and ``MAX_PROXIES`` proxies, read again every
  ``PROVIDER_TTL_S``; a refresh that fails keeps the list it had). A provider that cannot
  be read before there is any list fails the pages with ``proxy_provider`` (retried); a
  missing secret or a bad URL fails them with ``proxy_config``.
- **Rotation.** ``round_robin`` takes the proxies in turn, ``random`` at random,
  ``per_host`` gives each host a proxy it keeps until that proxy rests. Resting proxies are
  skipped; when every proxy rests the task is handed back to the queue (untried, keeping its
  retries) until the first one is back.
- **Health.** Per proxy: requests it answered (``ok``), failed (the proxy or the way
  through it did not deliver: connection, timeout, a bad or 5xx answer) and bans. A ban
  (a status of ``ban.statuses``, or a page matching ``ban.selector``) and a proxy that
  cannot be connected to at all (``proxy_connection``) make it rest for
  ``ban.cooldown_s``. The page is retried through another proxy with the class
  ``proxy_banned``; the retry counts against ``retries.max_attempts`` like any other, so a
  page banned through every proxy ends as failed ``proxy_banned`` after its retries.

Health is per worker process: on a distributed deployment each worker learns its own bans.
Every outcome is counted in the ``trawl.proxy.requests`` metric and bans and rests are
logged, each naming the proxy as ``host:port``; credentials appear nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit

from backends.clock import Clock
from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import DocumentFetcher, Fetcher, FetchRequest
from nodes.page import Page
from worker.endings import HandBack
from workflows.proxy_urls import ProxyAddress, ProxyUrlError, parse_listed_proxy, parse_proxy_url
from workflows.redact import redact_url
from workflows.secrets import MissingSecretError, resolve
from workflows.spec import Proxies

if TYPE_CHECKING:
    from worker.context import ExecutionContext

log = logging.getLogger(__name__)

# A provider's answer is read up to this many bytes, and this many proxies are used of it
# (the rest are left out, with a warning): server-side bounds, whatever the workflow says.
PROVIDER_MAX_BYTES = 1024 * 1024
MAX_PROXIES = 1000
PROVIDER_TIMEOUT_S = 30.0
# The provider's list is read again this often. With no list yet, a failed read fails the
# pages with its error for PROVIDER_RETRY_S before the provider is asked again; a failed
# read again keeps the list there is and is tried after PROVIDER_REFRESH_RETRY_S.
PROVIDER_TTL_S = 600.0
PROVIDER_RETRY_S = 10.0
PROVIDER_REFRESH_RETRY_S = 60.0
# A task waiting for a resting proxy is offered again after at most this long.
MAX_WAIT_S = 60.0
# per_host: hosts remembered per execution; the least recently used are forgotten (and
# get a proxy afresh).
MAX_STICKY_HOSTS = 100_000

Outcome = Literal["ok", "failed", "banned"]
# Told of every request through a proxy: the proxy's name and how it went (telemetry).
OutcomeListener = Callable[[str, Outcome], None]
# GETs a provider's list: the resolved URL in, the body out; TrawlError when it cannot.
ProviderFetch = Callable[[str, str], Awaitable[bytes]]

# Errors after which the proxy, or the way through it, is to blame (a proxy the address
# guard refuses among them).
_FAILURES = frozenset(
    {
        "connection",
        "timeout",
        "bad_response",
        "http_5xx",
        "proxy_connection",
        "proxy_config",
        "blocked_address",
    }
)
# The classes a fetch error names its status with: http_404, http_429; 5xx are one class,
# their status is in the message ("HTTP 503 from <url>", worker/fetchers/classify.py).
_STATUS_CLASS = re.compile(r"http_([1-5][0-9][0-9])")
_STATUS_MESSAGE = re.compile(r"HTTP ([1-5][0-9][0-9]) from ")


def response_status(exc: BaseException) -> int | None:
    """The HTTP status a fetch error stands for (both engines raise them through
    worker/fetchers/classify.py), or None when it is no status (a timeout, a refusal)."""
    error_class = str(getattr(exc, "error_class", ""))
    match = _STATUS_CLASS.fullmatch(error_class)
    if match is not None:
        return int(match.group(1))
    if error_class == "http_5xx":
        found = _STATUS_MESSAGE.match(str(exc))
        if found is not None:
            return int(found.group(1))
    return None


@dataclass(slots=True)
class ProxyHealth:
    """How one proxy has done in this execution, in this process."""

    ok: int = 0
    failed: int = 0
    banned: int = 0
    last_ban: datetime | None = None
    resting_until: float = 0.0  # monotonic; resting while the clock is before it


@dataclass(slots=True, eq=False)
class Proxy:
    """One proxy of a pool: ``url`` (credentials resolved, for the fetchers only) and
    ``name``, how it is shown (``host:port``, ``#2`` for a second one of the same address)."""

    name: str
    url: str = field(repr=False)
    health: ProxyHealth = field(default_factory=ProxyHealth)

    def resting(self, now: float) -> bool:
        return now < self.health.resting_until


def proxy_url(address: ProxyAddress) -> str:
    """The URL the fetchers are given: ``http://user:password@host:port``, percent-encoded."""
    userinfo = ""
    if address.username or address.password:
        userinfo = quote(address.username, safe="")
        if address.password:
            userinfo += ":" + quote(address.password, safe="")
        userinfo += "@"
    return f"http://{userinfo}{address.bracketed_host}:{address.port}"


class ProxyPool:
    """The proxies of one execution in one process: the list, rotation and health.

    ``secrets`` fill the ``${secret:NAME}`` of ``spec``; ``provider`` reads the provider's
    list (None: a workflow with a ``provider_url`` fails with ``proxy_provider``), sending
    ``user_agent``; ``on_outcome`` is told of every request's outcome; ``rng`` picks for
    ``random``.
    """

    def __init__(
        self,
        spec: Proxies,
        secrets: Mapping[str, str],
        *,
        clock: Clock,
        provider: ProviderFetch | None = None,
        user_agent: str = "trawl",
        on_outcome: OutcomeListener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self._user_agent = user_agent
        # Put in URLs as they are meant (a password with / or @ in it): percent-encoded.
        self._secrets = {name: quote(value, safe="") for name, value in secrets.items()}
        self._clock = clock
        self._provider = provider
        self._on_outcome = on_outcome
        self._rng = rng or random.Random()
        self._proxies: list[Proxy] = []
        self._loaded = False
        self._refresh_at = float("inf")  # when the provider's list is read again
        self._error: TrawlError | None = None  # why there is no list (until _retry_at)
        self._retry_at = 0.0
        self._lock = asyncio.Lock()
        self._cursor = 0
        self._hosts: OrderedDict[str, Proxy] = OrderedDict()
        self._all_resting_until = 0.0  # logged once per such period

    @property
    def proxies(self) -> list[Proxy]:
        """The proxies in use, in order (empty until the first ``choose``)."""
        return list(self._proxies)

    def health(self) -> list[dict[str, object]]:
        """Each proxy's health: ``{proxy, ok, failed, banned, last_ban, resting}``."""
        now = self._clock.now()
        return [
            {
                "proxy": p.name,
                "ok": p.health.ok,
                "failed": p.health.failed,
                "banned": p.health.banned,
                "last_ban": p.health.last_ban.isoformat() if p.health.last_ban else None,
                "resting": p.resting(now),
            }
            for p in self._proxies
        ]

    async def choose(self, url: str) -> Proxy:
        """The proxy a request for ``url`` goes through, by the rotation; HandBack when
        every proxy rests; PermanentError/RetryableError when there is no list."""
        await self._ensure_list()
        now = self._clock.now()
        ready = [p for p in self._proxies if not p.resting(now)]
        if not ready:
            raise self._all_resting(now)
        rotation = self.spec.rotation
        if rotation == "random":
            return self._rng.choice(ready)
        if rotation == "per_host":
            return self._sticky(_host_of(url), now)
        return self._next_in_turn(now)

    # -- what a request's outcome says about its proxy

    def judge_error(self, proxy: Proxy, url: str, exc: TrawlError) -> None:
        """Count a fetch that raised ``exc``; raise ``proxy_banned`` when its status is a
        ban (the page is to be retried through another proxy)."""
        status = response_status(exc)
        if status is not None and status in self.spec.ban.statuses:
            self._ban(proxy, url, f"HTTP {status}")
            raise RetryableError(
                f"{url}: proxy {proxy.name} is banned (HTTP {status}); the page is tried "
                "again through another proxy",
                error_class="proxy_banned",
            ) from exc
        if exc.error_class in _FAILURES:
            self._count(proxy, "failed")
            proxy.health.failed += 1
            if exc.error_class == "proxy_connection":
                self._rest(proxy, "cannot be connected to")
        else:
            self._succeeded(proxy)  # it delivered the site's answer (a 404, not HTML...)

    def judge_page(self, proxy: Proxy, url: str, page: Page) -> None:
        """Count a page fetched through ``proxy``; raise ``proxy_banned`` when it matches
        ``ban.selector`` (a CAPTCHA or block page answered with 200)."""
        selector = self.spec.ban.selector
        if selector is not None and page.css_first(selector) is not None:
            self._ban(proxy, url, "the page matches ban.selector")
            raise RetryableError(
                f"{url}: proxy {proxy.name} is banned (the page matches ban.selector "
                f"{selector!r}); the page is tried again through another proxy",
                error_class="proxy_banned",
            )
        self._succeeded(proxy)

    def _succeeded(self, proxy: Proxy) -> None:
        proxy.health.ok += 1
        self._count(proxy, "ok")

    def _ban(self, proxy: Proxy, url: str, reason: str) -> None:
        health = proxy.health
        health.banned += 1
        health.last_ban = self._clock.wall()
        self._count(proxy, "banned")
        log.warning(
            "proxy %s banned (%s) fetching %s; ok %d, failed %d, banned %d",
            proxy.name,
            reason,
            redact_url(url),
            health.ok,
            health.failed,
            health.banned,
        )
        self._rest(proxy, "is banned")

    def _rest(self, proxy: Proxy, why: str) -> None:
        cooldown = self.spec.ban.cooldown_s
        proxy.health.resting_until = self._clock.now() + cooldown
        log.warning("proxy %s %s; resting %g s", proxy.name, why, cooldown)

    def _count(self, proxy: Proxy, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(proxy.name, outcome)

    # -- rotation

    def _next_in_turn(self, now: float) -> Proxy:
        count = len(self._proxies)
        for step in range(count):
            index = (self._cursor + step) % count
            proxy = self._proxies[index]
            if not proxy.resting(now):
                self._cursor = index + 1
                return proxy
        raise AssertionError("choose() found a proxy that is not resting")  # pragma: no cover

    def _sticky(self, host: str, now: float) -> Proxy:
        proxy = self._hosts.get(host)
        if proxy is not None and not proxy.resting(now):
            self._hosts.move_to_end(host)
            return proxy
        proxy = self._next_in_turn(now)
        self._hosts[host] = proxy
        self._hosts.move_to_end(host)
        while len(self._hosts) > MAX_STICKY_HOSTS:
            self._hosts.popitem(last=False)
        return proxy

    def _all_resting(self, now: float) -> HandBack:
        back = min(p.health.resting_until for p in self._proxies)
        if back > self._all_resting_until:
            self._all_resting_until = back
            log.warning(
                "all %d proxies are resting; pages wait %.2f s for the first one back",
                len(self._proxies),
                back - now,
            )
        return HandBack(min(MAX_WAIT_S, max(0.05, back - now)))

    # -- the list

    async def _ensure_list(self) -> None:
        now = self._clock.now()
        if self._loaded and now < self._refresh_at:
            return
        if self._loaded:  # a provider list to read again: one task does, the rest go on
            if not self._lock.locked():
                async with self._lock:
                    if now >= self._refresh_at:
                        await self._refresh()
            return
        async with self._lock:
            if self._loaded:
                return
            if self._error is not None and self._clock.now() < self._retry_at:
                raise _again(self._error)
            try:
                self._use(self._static() + await self._provided())
            except TrawlError as exc:
                self._error = exc
                self._retry_at = self._clock.now() + PROVIDER_RETRY_S
                raise
            self._loaded = True
            self._error = None

    async def _refresh(self) -> None:
        """Read the provider's list again; on failure keep the current one."""
        try:
            self._use(self._static() + await self._provided())
        except TrawlError as exc:
            self._refresh_at = self._clock.now() + PROVIDER_REFRESH_RETRY_S
            log.warning(
                "reading the proxy provider again failed, keeping %d proxies: %s",
                len(self._proxies),
                exc,
            )

    def _use(self, addresses: list[ProxyAddress]) -> None:
        """Make ``addresses`` the pool, keeping the health of proxies already in it."""
        if not addresses:
            raise RetryableError(
                f"proxies.provider_url {self._provider_shown()}: the provider answered no proxies",
                error_class="proxy_provider",
            )
        if len(addresses) > MAX_PROXIES:
            log.warning("%d proxies listed; the first %d are used", len(addresses), MAX_PROXIES)
            addresses = addresses[:MAX_PROXIES]
        known = {p.name: p for p in self._proxies}
        seen: dict[str, int] = {}
        pool: list[Proxy] = []
        for address in addresses:
            seen[address.name] = seen.get(address.name, 0) + 1
            count = seen[address.name]
            name = address.name if count == 1 else f"{address.name}#{count}"
            url = proxy_url(address)
            old = known.get(name)
            if old is not None and old.url == url:
                pool.append(old)  # the same proxy: its health and hosts stay
            else:
                pool.append(Proxy(name, url, old.health if old is not None else ProxyHealth()))
        self._proxies = pool
        self._cursor %= len(pool)
        self._hosts = OrderedDict((h, p) for h, p in self._hosts.items() if p in pool)
        if self.spec.provider_url is not None:
            self._refresh_at = self._clock.now() + PROVIDER_TTL_S

    def _static(self) -> list[ProxyAddress]:
        """``urls``, secrets resolved."""
        out: list[ProxyAddress] = []
        for i, template in enumerate(self.spec.urls):
            where = f"proxies.urls[{i}]"
            try:
                out.append(parse_proxy_url(resolve(template, self._secrets)))
            except MissingSecretError as exc:
                raise PermanentError(f"{where}: {exc}", error_class="proxy_config") from None
            except ProxyUrlError:
                # Not the parser's message: it would show the resolved URL.
                raise PermanentError(
                    f"{where}: with its secrets filled in it is not a proxy URL "
                    "(http://[user:password@]host:port)",
                    error_class="proxy_config",
                ) from None
        return out

    async def _provided(self) -> list[ProxyAddress]:
        """The provider's proxies (none without a provider)."""
        template = self.spec.provider_url
        if template is None:
            return []
        shown = self._provider_shown()
        try:
            url = resolve(template, self._secrets)
        except MissingSecretError as exc:
            raise PermanentError(
                f"proxies.provider_url: {exc}", error_class="proxy_config"
            ) from None
        if self._provider is None:
            raise PermanentError(
                f"proxies.provider_url {shown}: this worker has no http client to read it",
                error_class="proxy_provider",
            )
        try:
            body = await self._provider(url, self._user_agent)
        except TrawlError as exc:
            status = response_status(exc)
            why = f"answered HTTP {status}" if status else str(exc).replace(url, shown)
            raise RetryableError(
                f"proxies.provider_url {shown}: {why}", error_class="proxy_provider"
            ) from None
        return _listed(body, shown)

    def _provider_shown(self) -> str:
        """The provider URL as it may be shown: its template (secrets by name), redacted."""
        return redact_url(self.spec.provider_url or "")


def _listed(body: bytes, shown: str) -> list[ProxyAddress]:
    """A provider's answer: one proxy URL (or ``host:port``) per line; blank lines and
    ``#`` comments skipped. A line that is no proxy is an error naming its number only (the
    line may hold credentials)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PermanentError(
            f"proxies.provider_url {shown}: the answer is not UTF-8 text",
            error_class="proxy_provider",
        ) from None
    out: list[ProxyAddress] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(parse_listed_proxy(line))
        except ProxyUrlError:
            raise PermanentError(
                f"proxies.provider_url {shown}: line {number} is not a proxy "
                "(http://[user:password@]host:port, or host:port)",
                error_class="proxy_provider",
            ) from None
    return out


def _again(error: TrawlError) -> TrawlError:
    """A fresh error like ``error`` (one instance raised from many tasks would pile up
    their tracebacks)."""
    if isinstance(error, RetryableError):
        return RetryableError(str(error), error_class=error.error_class)
    return PermanentError(str(error), error_class=error.error_class)


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2].lower()
    except ValueError:
        return url


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One request's way through a pool's proxy: opens the page and judges the outcome."""

    pool: ProxyPool
    proxy: Proxy

    @property
    def name(self) -> str:
        return self.proxy.name

    def request(self, request: FetchRequest) -> FetchRequest:
        """``request`` through this proxy."""
        return replace(request, proxy=self.proxy.url)

    async def open(
        self, stack: AsyncExitStack, opening: AbstractAsyncContextManager[Page], url: str
    ) -> Page:
        """Enter ``opening`` (a fetcher's ``open``) on ``stack``; the page, unless the
        outcome bans the proxy (RetryableError ``proxy_banned``)."""
        try:
            page = await stack.enter_async_context(opening)
        except TrawlError as exc:
            self.pool.judge_error(self.proxy, url, exc)
            raise
        self.pool.judge_page(self.proxy, url, page)
        return page


class ProxyRouter:
    """Gives each task of an execution with ``proxies`` its route, from the execution's
    own pool, built on first use and kept on its context (so it ends with it).

    ``http`` is the http engine, which reads providers' lists (behind the SSRF guard);
    ``on_outcome`` is told of every request through a proxy.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        http: Fetcher | None = None,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        self._clock = clock
        self._provider = _provider_fetch(http)
        self._on_outcome = on_outcome

    async def route(self, ctx: ExecutionContext, url: str) -> ProxyRoute | None:
        """The route of a request for ``url`` in ``ctx``'s execution; None without proxies."""
        spec = ctx.workflow.proxies
        if spec is None:
            return None
        pool = ctx.proxy_pool
        if pool is None:
            pool = ctx.proxy_pool = ProxyPool(
                spec,
                ctx.secrets,
                clock=self._clock,
                provider=self._provider,
                user_agent=ctx.workflow.fetch.user_agent,
                on_outcome=self._on_outcome,
            )
        return ProxyRoute(pool, await pool.choose(url))


def _provider_fetch(http: Fetcher | None) -> ProviderFetch | None:
    """How a provider's list is read: a GET on the http engine (its guard, its redirects),
    any content type, at most PROVIDER_MAX_BYTES; None when the engine cannot."""
    if not isinstance(http, DocumentFetcher):
        return None
    fetcher = http

    async def fetch(url: str, user_agent: str) -> bytes:
        request = FetchRequest(
            url=url,
            timeout_s=PROVIDER_TIMEOUT_S,
            user_agent=user_agent,
            max_body_bytes=PROVIDER_MAX_BYTES,
        )
        document = await fetcher.fetch_document(request)
        return document.body

    return fetch
