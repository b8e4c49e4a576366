"""The engines a crawl fetches with: the fetchers by engine name and the robots.txt cache.

The one place they are opened, for ``trawl run``, ``trawl preview``, the orchestrator's
preview and ``trawl worker`` alike. Everything comes in as plain arguments (the SSRF guard,
a Chromium binary), so the composition roots in ``trawl/`` decide policy and settings and
this module only opens and closes.

The http engine is always there. The browser is opened one of two ways: for a known
workflow (``trawl run``, a preview) it is launched up front, and only if a phase uses it,
so a missing Chromium fails before the crawl starts; a distributed worker does not know
which workflows its tasks belong to, so it gets a browser that starts on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp

from backends.clock import Clock, SystemClock
from backends.errors import TrawlError
from backends.fetcher import Fetcher
from worker.fetchers.cache import HttpCache
from worker.fetchers.http import HttpFetcher, get_following_redirects, guarded_connector
from worker.fetchers.lazy import LazyFetcher
from worker.netguard import NetGuard
from worker.robots import RobotsCache, RobotsFetch
from workflows.spec import Workflow

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: at least 500 KiB must be read
ROBOTS_TIMEOUT_S = 10.0
BROWSER_RESTART_AFTER = 500  # pages one Chromium serves before it is replaced


class Engines(NamedTuple):
    """What a pipeline fetches with; unpacks as ``fetchers, robots``."""

    fetchers: dict[str, Fetcher]
    robots: RobotsCache


def uses_browser(workflow: Workflow) -> bool:
    """Whether any phase of ``workflow`` runs on the browser engine, or its login is a
    script (run in the browser whatever the phases' engines)."""
    if workflow.login is not None and workflow.login.script is not None:
        return True
    return any(workflow.engine_of(p) == "browser" for p in workflow.phases)


@contextlib.asynccontextmanager
async def open_engines(
    guard: NetGuard,
    *,
    workflow: Workflow | None = None,
    chromium_path: str | None = None,
    browser_restart_after: int = BROWSER_RESTART_AFTER,
    cache: HttpCache | None = None,
) -> AsyncIterator[Engines]:
    """The fetchers and a robots.txt cache, all behind ``guard``, closed when the block
    ends. With ``workflow`` the browser is launched now if one of its phases uses it (and
    left out otherwise); without, it starts on first use. ``chromium_path`` None: the
    Chromium Playwright installed. ``cache``: pages and robots.txt answered from an HTTP
    cache when they can be (``trawl run --cache``; worker/fetchers/cache.py)."""

    def browser() -> Fetcher:
        # Imported here: a crawl on the http engine alone never loads Playwright.
        from worker.fetchers.browser import BrowserFetcher

        # The kind of browser the workflow's pages need, launched first: the lean one
        # (images and web fonts off) only when it blocks both.
        blocked = set(workflow.fetch.block_resources) if workflow is not None else set()
        return BrowserFetcher(
            executable_path=chromium_path,
            restart_after_pages=browser_restart_after,
            guard=guard,
            lean_first=workflow is None or {"image", "font"} <= blocked,
        )

    async with contextlib.AsyncExitStack() as stack:
        http = HttpFetcher(guard=guard)
        await http.start()
        stack.push_async_callback(http.close)
        fetchers: dict[str, Fetcher] = {"http": http}
        if workflow is None:
            lazy = LazyFetcher(browser)
            stack.push_async_callback(lazy.close)
            fetchers["browser"] = lazy
        elif uses_browser(workflow):
            eager = browser()
            await eager.start()
            stack.push_async_callback(eager.close)
            fetchers["browser"] = eager
        robots = await stack.enter_async_context(open_robots(guard, cache=cache))
        yield Engines(cache.wrap(fetchers) if cache is not None else fetchers, robots)


@contextlib.asynccontextmanager
async def open_robots(
    guard: NetGuard | None = None, clock: Clock | None = None, cache: HttpCache | None = None
) -> AsyncIterator[RobotsCache]:
    """A robots.txt cache over its own HTTP session, behind ``guard`` (default: allow all),
    reading through ``cache`` when one is given."""
    guard = guard if guard is not None else NetGuard.allow_all()
    session = aiohttp.ClientSession(
        connector=guarded_connector(guard), cookie_jar=aiohttp.DummyCookieJar()
    )
    try:
        fetch = robots_fetch(session, guard=guard)
        if cache is not None:
            fetch = cache.robots(fetch)
        yield RobotsCache(fetch, clock or SystemClock())
    finally:
        await session.close()


def robots_fetch(
    session: aiohttp.ClientSession,
    timeout_s: float = ROBOTS_TIMEOUT_S,
    guard: NetGuard | None = None,
) -> RobotsFetch:
    """A robots.txt fetch over ``session``: (status, text), at most 512 KiB (RFC 9309).
    Redirects are followed hop by hop through ``guard`` (default: allow all); a refused
    address is an OSError, so the robots.txt counts as unreachable."""
    guard = guard if guard is not None else NetGuard.allow_all()
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def fetch(url: str, user_agent: str) -> tuple[int, str]:
        try:
            resp = await get_following_redirects(
                session,
                url,
                guard,
                headers={"User-Agent": user_agent},
                timeout_s=timeout_s,
                max_redirects=10,
                client_timeout=timeout,
            )
            async with resp:
                body = await resp.content.read(ROBOTS_MAX_BYTES)
                return resp.status, body.decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TrawlError) as exc:
            raise OSError(str(exc)) from exc

    return fetch
