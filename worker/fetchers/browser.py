"""The browser engine: Chromium through Playwright, for pages that need JavaScript.

One browser per process. Pages are rendered in tabs, each in its own browser context, and a
tab serves a small batch of tasks (``pages_per_context``, default 8) before its context is
thrown away: opening a tab costs a renderer process (~0.1-1 s on a small machine), several
times the cost of rendering a typical page, so one context per task would spend most of
the time starting renderers. Within a batch cookies and storage persist; across batches
nothing does. ``pages_per_context=1`` gives a fresh context per task. The yielded Page is
the live tab, so script nodes can evaluate in it.
Chromium's memory grows over thousands of pages, so the browser is replaced every
``restart_after_pages`` pages: new tasks go to a new browser while the old one finishes its
pages in flight, then closes. A crashed tab or a dead browser is a RetryableError
``browser_crash``, and a browser that disconnected is relaunched for the next task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

from playwright.async_api import Browser, BrowserContext, Playwright, Route, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page as PlaywrightPage
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import Fetcher, FetchRequest
from nodes.page import Page
from worker.fetchers import classify

_log = logging.getLogger(__name__)

# Headless Chromium for a container: no sandbox (no user namespaces there), no GPU, and none
# of the background traffic (updates, sync, QUIC probes) that adds requests no page asked for.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

WaitUntil = Literal["commit", "domcontentloaded", "load", "networkidle"]

# Chromium's network errors that a retry may cure, and those it will not.
_PERMANENT_NET_ERRORS = {
    "net::ERR_TOO_MANY_REDIRECTS": "redirect_loop",
    "net::ERR_INVALID_URL": "invalid_url",
    "net::ERR_UNSAFE_PORT": "invalid_url",
    "net::ERR_UNSAFE_REDIRECT": "bad_redirect",
    "net::ERR_INVALID_REDIRECT": "bad_redirect",
    "net::ERR_DISALLOWED_URL_SCHEME": "invalid_url",
    "net::ERR_UNKNOWN_URL_SCHEME": "invalid_url",
    "net::ERR_RESPONSE_HEADERS_TOO_BIG": "bad_response",
}
_TIMEOUT_NET_ERRORS = ("net::ERR_TIMED_OUT", "net::ERR_CONNECTION_TIMED_OUT")
_CRASH_MARKERS = ("crash", "has been closed", "Target closed", "Connection closed")


class _Browser:
    """One launched browser and how many pages it has served and is serving."""

    __slots__ = ("browser", "in_flight", "retired", "served")

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.in_flight = 0
        self.served = 0
        self.retired = False

    @property
    def usable(self) -> bool:
        return not self.retired and self.browser.is_connected()


class _Tab:
    """A context with one tab, reused for up to ``pages_per_context`` tasks."""

    __slots__ = ("context", "crashed", "handle", "key", "page", "uses")

    def __init__(
        self,
        handle: _Browser,
        context: BrowserContext,
        page: PlaywrightPage,
        key: tuple[str, tuple[tuple[str, str], ...], frozenset[str]],
    ) -> None:
        self.handle = handle
        self.context = context
        self.page = page
        self.key = key
        self.uses = 0
        self.crashed = asyncio.Event()
        page.on("crash", lambda _: self.crashed.set())


def _tab_key(
    request: FetchRequest,
) -> tuple[str, tuple[tuple[str, str], ...], frozenset[str]]:
    """What a reused tab must share with the request: user agent, headers, blocking."""
    return (
        request.user_agent,
        tuple(sorted((request.headers or {}).items())),
        frozenset(request.block_resources),
    )


class BrowserFetcher(Fetcher):
    """Fetcher over headless Chromium.

    ``executable_path``: a Chromium binary (TRAWL_CHROMIUM_PATH); None uses Playwright's own
    build (``playwright install chromium``). ``max_contexts`` caps the tabs open at once,
    which is what bounds the browser's memory. ``pages_per_context`` is how many tasks a tab
    serves before its context is discarded. ``restart_after_pages`` replaces the browser
    after that many pages.
    """

    def __init__(
        self,
        *,
        executable_path: str | None = None,
        max_contexts: int = 8,
        restart_after_pages: int = 500,
        pages_per_context: int = 8,
        launch_timeout_s: float = 60.0,
        extra_args: Iterable[str] = (),
    ) -> None:
        if restart_after_pages < 1:
            raise ValueError("restart_after_pages must be at least 1")
        if pages_per_context < 1:
            raise ValueError("pages_per_context must be at least 1")
        self._pages_per_context = pages_per_context
        self._idle: list[_Tab] = []
        self._executable_path = executable_path
        self._args = [*CHROMIUM_ARGS, *extra_args]
        self._launch_timeout_s = launch_timeout_s
        self._restart_after_pages = restart_after_pages
        self._slots = asyncio.Semaphore(max_contexts)
        self._launch_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._current: _Browser | None = None
        self._browsers: set[_Browser] = set()
        self.launches = 0  # how many browsers this fetcher has started (restarts + 1)
        self.contexts_opened = 0  # how many browser contexts (tabs) it has opened

    async def start(self) -> None:
        """Start Playwright and launch the first browser (failing here, not on a task)."""
        if self._playwright is not None:
            return
        self._playwright = await async_playwright().start()
        try:
            self._current = await self._launch()
        except BaseException:
            await self._playwright.stop()
            self._playwright = None
            raise

    async def close(self) -> None:
        """Close every browser (pages still open are closed with them) and Playwright."""
        idle, self._idle = self._idle, []
        for tab in idle:
            await _close_quietly(tab.context.close())
        browsers, self._browsers, self._current = list(self._browsers), set(), None
        for handle in browsers:
            await _close_quietly(handle.browser.close())
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            await playwright.stop()

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        """Render ``request.url`` in a tab of its own for the duration of the block."""
        async with self._slots:
            handle = await self._checkout()
            tab: _Tab | None = None
            healthy = False
            try:
                try:
                    tab = await self._tab(handle, request)
                    html, status, headers = await asyncio.wait_for(
                        _load(tab.page, request), request.timeout_s
                    )
                except TrawlError as exc:
                    # An HTTP error page leaves the tab fine; a timeout may leave it busy.
                    healthy = isinstance(exc, PermanentError)
                    raise
                except (TimeoutError, PlaywrightTimeoutError) as exc:
                    if tab is not None and tab.crashed.is_set():
                        raise _crash(request.url, "the page crashed") from exc
                    raise classify.timeout(request.url, request.timeout_s) from exc
                except PlaywrightError as exc:
                    crashed = tab is not None and tab.crashed.is_set()
                    raise _navigation_error(
                        exc, request.url, crashed or not handle.browser.is_connected()
                    ) from exc
                yield Page(
                    url=tab.page.url,
                    html=html,
                    status=status,
                    headers=headers,
                    requested_url=request.url,
                    evaluate=_evaluator(tab.page, tab.crashed),
                )
                healthy = True
            finally:
                if tab is not None:
                    await self._return_tab(tab, healthy)
                await self._checkin(handle)

    async def _tab(self, handle: _Browser, request: FetchRequest) -> _Tab:
        """An idle tab of ``handle`` fit for ``request``, else a new context and tab."""
        key = _tab_key(request)
        while self._idle:
            tab = self._idle.pop()
            if tab.handle is handle and tab.key == key and not tab.page.is_closed():
                tab.uses += 1
                return tab
            await _close_quietly(tab.context.close())
        self.contexts_opened += 1
        context = await handle.browser.new_context(
            user_agent=request.user_agent,
            extra_http_headers=request.headers or None,
            service_workers="block",
        )
        try:
            page = await context.new_page()
            if request.block_resources:
                await page.route("**/*", _blocker(frozenset(request.block_resources)))
        except BaseException:
            await _close_quietly(context.close())
            raise
        tab = _Tab(handle, context, page, key)
        tab.uses = 1
        return tab

    async def _return_tab(self, tab: _Tab, healthy: bool) -> None:
        """Keep a healthy tab for the next task of its batch; close it otherwise."""
        reusable = (
            healthy
            and tab.uses < self._pages_per_context
            and not tab.crashed.is_set()
            and tab.handle.usable
            and not tab.page.is_closed()
        )
        if reusable:
            self._idle.append(tab)
        else:
            await _close_quietly(tab.context.close())

    async def _launch(self) -> _Browser:
        assert self._playwright is not None, "BrowserFetcher.start() was not called"
        browser = await self._playwright.chromium.launch(
            executable_path=self._executable_path,
            headless=True,
            args=self._args,
            timeout=self._launch_timeout_s * 1000,
        )
        handle = _Browser(browser)
        self._browsers.add(handle)
        self.launches += 1
        return handle

    async def _checkout(self) -> _Browser:
        """The browser for the next page: the current one, or a new one when the current
        has served its quota or died. Counts the page against it."""
        current = self._current
        if current is None or not current.usable:
            async with self._launch_lock:
                current = self._current
                if current is None or not current.usable:
                    if self._playwright is None:
                        raise RuntimeError("BrowserFetcher.start() was not called")
                    old = current
                    try:
                        current = self._current = await self._launch()
                    except PlaywrightError as exc:
                        raise RetryableError(
                            f"could not launch Chromium: {exc.message}",
                            error_class="browser_crash",
                        ) from exc
                    if old is not None:
                        old.retired = True
                        if old.in_flight == 0:
                            await self._dispose(old)
        current.in_flight += 1
        current.served += 1
        if current.served >= self._restart_after_pages:
            current.retired = True  # the next page launches the replacement
        return current

    async def _checkin(self, handle: _Browser) -> None:
        handle.in_flight -= 1
        if handle.in_flight == 0 and (handle.retired or not handle.browser.is_connected()):
            if handle is self._current:
                self._current = None
            await self._dispose(handle)

    async def _dispose(self, handle: _Browser) -> None:
        stale = [tab for tab in self._idle if tab.handle is handle]
        self._idle = [tab for tab in self._idle if tab.handle is not handle]
        for tab in stale:
            await _close_quietly(tab.context.close())
        if handle in self._browsers:
            self._browsers.discard(handle)
            await _close_quietly(handle.browser.close())


async def _load(tab: PlaywrightPage, request: FetchRequest) -> tuple[str, int, dict[str, str]]:
    """Navigate, judge the response as the http engine would, and read the DOM."""
    # Playwright's own timeout too, so the driver abandons the navigation when we do.
    response = await tab.goto(
        request.url,
        wait_until=cast(WaitUntil, request.wait_until),
        timeout=request.timeout_s * 1000,
    )
    if response is None:  # same-document navigation (only a fragment changed)
        status, headers = 200, {}
    else:
        status, headers = response.status, response.headers
    error = classify.status_error(status, request.url, headers.get("retry-after"))
    if error is None:
        error = classify.content_type_error(headers.get("content-type"), request.url)
    if error is not None:
        raise error
    # Chromium sniffs and renders an untyped image as an <img> page; judge the bytes as the
    # http engine does. Rare, so the extra body transfer does not matter.
    if (
        response is not None
        and "content-type" not in headers
        and not classify.looks_like_html(await response.body())
    ):
        raise classify.not_html(request.url)
    html = await tab.content()
    # The rendered DOM, counted in characters: a close enough stand-in for the byte cap.
    if len(html) > request.max_body_bytes:
        raise classify.too_large(request.url, request.max_body_bytes)
    return html, status, headers


def _blocker(types: frozenset[str]) -> Callable[[Route], Awaitable[None]]:
    async def handle(route: Route) -> None:
        try:
            if route.request.resource_type in types:
                await route.abort("blockedbyclient")
            else:
                await route.continue_()
        except PlaywrightError:
            pass  # the tab closed while the request was on its way: nothing to route

    return handle


def _evaluator(
    tab: PlaywrightPage, crashed: asyncio.Event
) -> Callable[[str, float], Awaitable[Any]]:
    async def evaluate(code: str, timeout_s: float) -> Any:
        """Run ``code`` in the page. TimeoutError when it runs too long, RuntimeError when
        it throws, RetryableError ``browser_crash`` when the tab died."""
        try:
            return await asyncio.wait_for(tab.evaluate(code), timeout_s)
        except PlaywrightError as exc:
            if crashed.is_set() or tab.is_closed():
                raise _crash(tab.url, exc.message) from exc
            raise RuntimeError(f"script failed: {exc.message}") from exc

    return evaluate


def _crash(url: str, detail: str) -> RetryableError:
    return RetryableError(f"{url}: browser crashed: {detail}", error_class="browser_crash")


def _navigation_error(exc: PlaywrightError, url: str, crashed: bool) -> TrawlError:
    message = exc.message or str(exc)
    if crashed or any(marker in message for marker in _CRASH_MARKERS):
        return _crash(url, message)
    if "Download is starting" in message:  # Chromium downloads what it cannot display
        return classify.not_html(url, "a download")
    for code, error_class in _PERMANENT_NET_ERRORS.items():
        if code in message:
            return PermanentError(f"{url}: {code}", error_class=error_class)
    if any(code in message for code in _TIMEOUT_NET_ERRORS):
        return RetryableError(f"{url}: {message}", error_class="timeout")
    if "net::ERR_" in message:
        return classify.connection(url, message.splitlines()[0])
    return RetryableError(f"{url}: {message.splitlines()[0]}", error_class="browser_error")


async def _close_quietly(closing: Awaitable[None]) -> None:
    """Close something that may already be gone with its browser."""
    try:
        await closing
    except PlaywrightError as exc:
        _log.debug("ignored while closing: %s", exc)
