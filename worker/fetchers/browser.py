"""The browser engine: Chromium through Playwright, for pages that need JavaScript.

One browser per process (two when some workflows block images and fonts and others do not: below).
Each session (an execution, which belongs to one tenant) with
given settings (user agent, headers, blocked resource types, proxy) gets one browser
context, and its pages are rendered in tabs of that context: a tab is kept for the
session's next page, and pages in flight at once get more tabs of the same context.
Opening a context and a tab costs a renderer process (~0.1-1 s on a small machine), more
than rendering a typical page, and a renderer kept across pages keeps the site's scripts
compiled and its files cached. A context serves ``pages_per_context`` pages (default 500,
the browser's own lifetime: a context replaced every 100 pages cost ~10% more CPU per page
on the JS benchmark site, for a 5,000-page crawl's peak PSS of 1.2 GB against 1.7 GB:
bench/README.md), then is retired: it takes no new page and is closed when its last tab is;
``pages_per_context=1`` gives a fresh context per page. The yielded Page is the live tab,
so script nodes can evaluate in it; its HTML is the DOM as the page's own world serializes
it, read over the tab's DevTools session (worker/fetchers/dom.py: Playwright's
``content()`` builds a JavaScript world of its own in every document, the dearest step of
reading a page).

Isolation: a context, and its tabs, are only ever used by requests of the same ``session``
with the same settings, so cookies, storage and open pages never cross from one execution
or tenant to another. Within a context cookies and storage persist from page to page (a
cookie the site set on one page goes with the next, as in a person's browser); across
contexts nothing does. After every task the pages it opened (popups) are closed. A tab
whose navigation or script timed out (its renderer may be spinning) is thrown away with
its whole context, which kills the renderer (the session's other pages in flight there
fail as ``browser_crash`` and are retried); a close that does not finish within
``close_timeout_s`` retires the whole browser. Idle tabs wait in a least-recently-used
pool: tabs in use and idle together never exceed ``max_contexts`` (the oldest idle one is
closed to make room; a context whose last tab closes is closed too), and a tab idle for
``idle_timeout_s`` is closed.
Chromium's memory grows over thousands of pages, so the browser is replaced every
``restart_after_pages`` pages: new tasks go to a new browser while the old one finishes its
pages in flight, then closes. A crashed tab or a dead browser is a RetryableError
``browser_crash``, and a browser that disconnected is relaunched for the next task.

What a page may load: the nodes see the DOM (extract reads the rendered HTML) and what a
script node evaluates, never the bytes of images, fonts or media, so those are blocked by
default (``block_resources``; stylesheets are loaded, since a page's scripts and a script
node can observe layout and computed styles through them). Requests are intercepted only
as far as the workflow needs: no headers and nothing blocked, no interception at all;
blocked types alone, the browser's own interception (``Fetch.enable``) asked to stop
requests of those types only (and the site's favicon with images), so the page's other
requests never leave the browser process; workflow headers, which must go to the page's own
site only, Playwright's routing of every request of the tab. Each request the interception
stops is still a round trip through Playwright's driver to Python and back, so images and
web fonts (the most numerous) are not requested at all when both are blocked (the default):
such a request goes to a browser launched with images and remote fonts turned off in Blink,
and any other to a second browser, launched on the first such request; each kind is
replaced every ``restart_after_pages`` of its pages.

The SSRF guard: Chromium resolves names and follows redirects itself, and Playwright's
request routing never sees a redirect's next hop (nor WebSockets, nor requests of other
targets such as popups and workers), so a route handler cannot enforce it. When the guard
can refuse anything, the fetcher runs ``GuardProxy``, a SOCKS5 proxy on 127.0.0.1, and
launches Chromium with every connection (loopback included) going through it: the proxy
resolves the host with the guard, refuses it if any address is refused, and connects
only to the addresses it checked. Every request, every redirect hop, subresources,
WebSockets and JavaScript navigations included, is checked after DNS resolution, and
Chromium does no DNS lookup of its own that a rebinding answer could turn. A refused
main document fails the fetch with BlockedAddressError; a refused subresource is just
missing from the page. The proxy runs on a thread and event loop of its own, so relaying
the browser's bytes never waits for, nor delays, the crawl's node chains. What is left:
UDP (WebRTC is restricted to proxied traffic, QUIC is off), and the proxy's own lookup is
the system resolver's, cached as it caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Playwright,
    ProxySettings,
    Route,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page as PlaywrightPage
from playwright.async_api import Request as PlaywrightRequest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from yarl import URL

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import Fetcher, FetchRequest
from nodes.page import Page
from worker.fetchers import classify
from worker.fetchers.dom import read_html
from worker.netguard import BlockedAddressError, NetGuard
from workflows.urls import origin_of

if TYPE_CHECKING:
    from playwright._impl._api_structures import Cookie, SetCookieParam

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
LoadState = Literal["domcontentloaded", "load", "networkidle"]  # fetch.wait_until's values

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
# How Chromium reports a connection the guard proxy did not make.
_PROXY_NET_ERRORS = ("net::ERR_SOCKS_CONNECTION_FAILED", "net::ERR_PROXY_CONNECTION_FAILED")
# With the guard proxy: every connection through it, loopback too (Chromium would go
# direct to loopback otherwise), and no WebRTC UDP around it.
_GUARDED_ARGS = (
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
# For requests that block images and fonts (the default): Blink itself never requests an
# image (<img>, CSS backgrounds, new Image()) nor a web font, where the interception below
# would pause each one and fail it from Python (a round trip through Playwright's driver per
# request). Browser-wide, so such requests get a browser of their own kind
# (BrowserFetcher._live); the interception stays, for what these flags do not cover.
_LEAN_ARGS = ("--blink-settings=imagesEnabled=false", "--disable-remote-fonts")
_CRASH_MARKERS = ("crash", "has been closed", "Target closed", "Connection closed")


class _Browser:
    """One launched browser and how many pages it has served and is serving.
    ``lean``: launched with images and web fonts turned off in Blink (``_LEAN_ARGS``),
    for requests that block both."""

    __slots__ = ("browser", "in_flight", "lean", "retired", "served")

    def __init__(self, browser: Browser, lean: bool) -> None:
        self.browser = browser
        self.lean = lean
        self.in_flight = 0
        self.served = 0
        self.retired = False

    @property
    def usable(self) -> bool:
        return not self.retired and self.browser.is_connected()


_TabKey = tuple[str, str, tuple[tuple[str, str], ...], frozenset[str], str]


class _Context:
    """A browser context of one session (and its settings), with the tabs open in it. It
    serves up to ``pages_per_context`` pages, then is retired: no new task is given to it
    and it is closed when its last tab is."""

    __slots__ = ("context", "handle", "key", "retired", "served", "tabs")

    def __init__(self, handle: _Browser, context: BrowserContext, key: _TabKey) -> None:
        self.handle = handle
        self.context = context
        self.key = key
        self.tabs = 0  # open tabs, in use or idle
        self.served = 0
        self.retired = False


class _Tab:
    """A tab of a session's context, reused by the tasks of that session."""

    __slots__ = (
        "crashed",
        "idle_since",
        "owner",
        "page",
        "poisoned",
        "popups",
        "session",
        "site",
    )

    def __init__(self, owner: _Context, page: PlaywrightPage) -> None:
        self.owner = owner
        self.page = page
        # The tab's own DevTools session: reads the DOM (worker/fetchers/dom.py) and,
        # where the workflow blocks resource types, stops them.
        self.session: CDPSession | None = None
        self.idle_since = 0.0
        # A script or navigation that outlived its timeout (the renderer may still be
        # running it): the tab's whole context is thrown away, which ends the renderer.
        self.poisoned = False
        self.crashed = asyncio.Event()
        # The origin of the page being loaded: the workflow's own headers go to it only.
        self.site = ""
        # The pages this tab opened (and they opened) during the current task.
        self.popups: list[PlaywrightPage] = []
        page.on("crash", lambda _: self.crashed.set())

        # No "request*" listeners: Playwright sends the events a page has listeners for, and
        # one per request (a blocked image is a failed request) is work for every page.
        # A plain function: Playwright keeps bookkeeping on handlers, which __slots__ refuse.
        def popup(opened: PlaywrightPage) -> None:
            self.popups.append(opened)
            opened.on("popup", popup)

        page.on("popup", popup)

    @property
    def handle(self) -> _Browser:
        return self.owner.handle

    @property
    def context(self) -> BrowserContext:
        return self.owner.context


def _lean(request: FetchRequest) -> bool:
    """Whether the request goes to a browser with images and web fonts turned off: it
    blocks both (as the default does)."""
    return "image" in request.block_resources and "font" in request.block_resources


def _tab_key(request: FetchRequest) -> _TabKey:
    """What a reused tab must share with the request: its session (the execution), user
    agent, headers, blocking and proxy (a context has one proxy for good)."""
    return (
        request.session,
        request.user_agent,
        tuple(sorted((request.headers or {}).items())),
        frozenset(request.block_resources),
        request.proxy or "",
    )


# SOCKS5 reply codes (RFC 1928 §6).
_SOCKS_OK = 0
_SOCKS_FAILURE = 1
_SOCKS_NOT_ALLOWED = 2
_SOCKS_HOST_UNREACHABLE = 4
_SOCKS_REFUSED = 5
_SOCKS_BAD_COMMAND = 7
_SOCKS_BAD_ADDRESS_TYPE = 8


class GuardProxy:
    """A SOCKS5 proxy (RFC 1928: CONNECT, no authentication) on 127.0.0.1 that connects
    only where ``guard`` allows: it resolves each requested host itself, refuses the host
    when any of its addresses is refused, and connects to the addresses it checked. It
    remembers why its last few connections failed, for the error of a failed navigation.

    It runs in a thread of its own, on an event loop of its own (the guard's lookups
    included): relaying every byte the browser downloads is steady work that would
    otherwise queue with the crawl's node chains on the crawl's event loop, and the
    crawl's loop being busy (a large page parsed) would stall every download.
    """

    def __init__(
        self,
        guard: NetGuard,
        *,
        connect_timeout_s: float = 30.0,
        handshake_timeout_s: float = 10.0,
        remember: int = 256,
    ) -> None:
        self._guard = guard
        self._connect_timeout_s = connect_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._remember = remember
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the proxy thread's
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._failures: OrderedDict[tuple[str, int], Exception] = OrderedDict()
        self._failures_lock = threading.Lock()  # written by the proxy's thread
        self.url = ""  # socks5://127.0.0.1:PORT once started

    async def start(self) -> str:
        """Start the proxy's thread and listen on a free port of 127.0.0.1; the URL."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="trawl-guard-proxy", daemon=True
            )
            thread.start()
            try:
                listening = asyncio.run_coroutine_threadsafe(self._listen(), loop)
                self._server = await asyncio.wrap_future(listening)
            except BaseException:
                await _stop_loop(loop, thread)
                raise
            self._loop, self._thread = loop, thread
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"socks5://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        """Stop listening, cut every connection still open and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._shutdown(), loop))
        finally:
            await _stop_loop(loop, thread)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _shutdown(self) -> None:
        """On the proxy's loop: stop serving."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    def failure(self, url: str) -> Exception | None:
        """Why the last connection to ``url``'s host and port failed, if it did:
        BlockedAddressError for a refusal, an OSError otherwise."""
        try:
            parsed = URL(url)
        except ValueError:
            return None
        with self._failures_lock:
            return self._failures.get((parsed.raw_host or "", parsed.port or 0))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                target = await _socks_request(reader, writer)
            if target is None:
                return
            host, port = target
            try:
                upstream_reader, upstream = await self._connect(host, port)
            except (BlockedAddressError, OSError) as exc:
                self._note(host, port, exc)
                writer.write(_socks_reply(_reply_code(exc)))
                await writer.drain()
                return
            with self._failures_lock:
                self._failures.pop((host, port), None)
            writer.write(_socks_reply(_SOCKS_OK))
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away (or never spoke SOCKS): nothing to answer
        except asyncio.CancelledError:
            # The proxy is closing and cuts the connection. Ended, not cancelled: asyncio's
            # stream server would log a cancelled handler as an error with a traceback.
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        addresses = await self._guard.checked_addresses(host)
        error: OSError = OSError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    return await asyncio.open_connection(address, port)
            except OSError as exc:  # refused, unreachable, timed out: try the next address
                error = exc
        raise error

    def _note(self, host: str, port: int, error: Exception) -> None:
        with self._failures_lock:
            self._failures[(host, port)] = error
            self._failures.move_to_end((host, port))
            while len(self._failures) > self._remember:
                self._failures.popitem(last=False)


async def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop the proxy thread's loop (its lookups' executor first), join it, close it."""
    with contextlib.suppress(RuntimeError, TimeoutError):  # stopped already, or stuck
        ending = asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop)
        await asyncio.wait_for(asyncio.wrap_future(ending), 10)
    loop.call_soon_threadsafe(loop.stop)
    await asyncio.to_thread(thread.join)
    loop.close()


async def _socks_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, int] | None:
    """Read a SOCKS5 greeting and CONNECT request: the (host, port) asked for, or None
    after answering a request this proxy does not serve."""
    version, count = await reader.readexactly(2)
    methods = await reader.readexactly(count)
    if version != 5 or 0 not in methods:
        writer.write(b"\x05\xff")  # no acceptable authentication method
        return None
    writer.write(b"\x05\x00")
    version, command, _reserved, kind = await reader.readexactly(4)
    if kind == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == 3:  # Chromium sends every host, IP literals too, as a name
        length = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(length)).decode("ascii", errors="replace")
    elif kind == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    else:
        writer.write(_socks_reply(_SOCKS_BAD_ADDRESS_TYPE))
        return None
    port = int.from_bytes(await reader.readexactly(2), "big")
    if version != 5 or command != 1:
        writer.write(_socks_reply(_SOCKS_BAD_COMMAND))
        return None
    return host, port


def _socks_reply(code: int) -> bytes:
    return bytes((5, code, 0, 1, 0, 0, 0, 0, 0, 0))  # bound address 0.0.0.0:0


def _reply_code(error: Exception) -> int:
    if isinstance(error, BlockedAddressError):
        return _SOCKS_NOT_ALLOWED
    if isinstance(error, ConnectionRefusedError):
        return _SOCKS_REFUSED
    if isinstance(error, OSError) and not isinstance(error, TimeoutError):
        return _SOCKS_HOST_UNREACHABLE
    return _SOCKS_FAILURE


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy ``source`` to ``sink`` until either side ends, then close ``sink``: closing one
    direction's sink ends the other direction's read too."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


class BrowserFetcher(Fetcher):
    """Fetcher over headless Chromium.

    ``executable_path``: a Chromium binary (TRAWL_CHROMIUM_PATH); None uses Playwright's own
    build (``playwright install chromium``). ``max_contexts`` caps the tabs alive at once,
    in use or idle (and so the pages rendered at once), which is what bounds the browser's
    memory. ``pages_per_context`` is how many pages of one session a context serves before
    it is retired; ``idle_timeout_s`` how long an idle tab is kept. ``close_timeout_s``
    bounds closing a context (a wedged renderer): past it the browser is replaced.
    ``restart_after_pages`` replaces the browser after that many pages. ``guard`` decides
    which addresses Chromium may connect to (default: ``NetGuard.allow_all()``); a
    ``GuardProxy`` applies it in front of every connection of the browser. ``lean_first``:
    which kind of browser ``start()`` launches, the lean one (for requests blocking images
    and fonts, as the default does) or the other; the other kind starts on its first page.
    """

    def __init__(
        self,
        *,
        executable_path: str | None = None,
        max_contexts: int = 8,
        restart_after_pages: int = 500,
        pages_per_context: int = 500,
        idle_timeout_s: float = 60.0,
        close_timeout_s: float = 5.0,
        launch_timeout_s: float = 60.0,
        extra_args: Iterable[str] = (),
        guard: NetGuard | None = None,
        lean_first: bool = True,
    ) -> None:
        if restart_after_pages < 1:
            raise ValueError("restart_after_pages must be at least 1")
        if pages_per_context < 1:
            raise ValueError("pages_per_context must be at least 1")
        if max_contexts < 1:
            raise ValueError("max_contexts must be at least 1")
        self._pages_per_context = pages_per_context
        self._max_contexts = max_contexts
        self._idle_timeout_s = idle_timeout_s
        self._close_timeout_s = close_timeout_s
        self._idle: list[_Tab] = []  # least recently used first
        self._in_use = 0  # tabs handed to tasks
        self._contexts: dict[_TabKey, _Context] = {}  # the open context of each key
        self._context_lock = asyncio.Lock()
        self._executable_path = executable_path
        self._args = [*CHROMIUM_ARGS, *extra_args]
        guard = guard if guard is not None else NetGuard.allow_all()
        self._guard = guard
        self._proxy: GuardProxy | None = None
        if guard.enforcing:
            self._proxy = GuardProxy(guard)
            self._args.extend(_GUARDED_ARGS)
        self._launch_timeout_s = launch_timeout_s
        self._lean_first = lean_first
        self._restart_after_pages = restart_after_pages
        self._slots = asyncio.Semaphore(max_contexts)
        self._launch_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        # The live browser of each kind: lean (images and web fonts off, for requests
        # blocking both, as the default does) or not. A kind's first request launches it.
        self._live: dict[bool, _Browser] = {}
        self._browsers: set[_Browser] = set()
        self.launches = 0  # how many browsers this fetcher has started (restarts + 1)
        self.contexts_opened = 0  # how many browser contexts it has opened
        self.tabs_opened = 0  # how many tabs it has opened in them

    async def start(self) -> None:
        """Start Playwright and launch the first browser (failing here, not on a task)."""
        if self._playwright is not None:
            return
        if self._proxy is not None:
            await self._proxy.start()
        try:
            self._playwright = await async_playwright().start()
            try:
                self._live[self._lean_first] = await self._launch(lean=self._lean_first)
            except BaseException:
                await self._playwright.stop()
                self._playwright = None
                raise
        except BaseException:
            if self._proxy is not None:
                await self._proxy.close()
            raise

    async def close(self) -> None:
        """Close every browser (pages still open are closed with them) and Playwright."""
        self._idle, self._contexts = [], {}
        browsers, self._browsers, self._live = list(self._browsers), set(), {}
        for handle in browsers:
            await _close_quietly(handle.browser.close())
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            await playwright.stop()
        if self._proxy is not None:
            await self._proxy.close()

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        """Render ``request.url`` in a tab of its own for the duration of the block."""
        async with self._slots:
            handle = await self._checkout(_lean(request))
            tab: _Tab | None = None
            healthy = False
            try:
                try:
                    tab = await self._tab(handle, request)
                    tab.site = origin_of(request.url)
                    if request.cookies:  # the execution's, for this URL (its own context)
                        await tab.context.add_cookies(_host_cookies(request))
                    html, status, headers = await asyncio.wait_for(
                        _load(tab, request), request.timeout_s
                    )
                except TrawlError:
                    # An HTTP error page (or a page of the wrong type) leaves the tab fine.
                    healthy = True
                    raise
                except (TimeoutError, PlaywrightTimeoutError) as exc:
                    if tab is not None and tab.crashed.is_set():
                        raise _crash(request.url, "the page crashed") from exc
                    if tab is not None:  # its renderer may be busy: not for another task
                        tab.poisoned = True
                    raise classify.timeout(request.url, request.timeout_s) from exc
                except PlaywrightError as exc:
                    refused = _proxy_unreachable(request, exc) or await self._refusal(
                        tab, request, exc
                    )
                    if refused is not None:
                        raise refused from exc
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
                    evaluate=_evaluator(tab),
                )
                healthy = True
            finally:
                if tab is not None:
                    await self._return_tab(tab, healthy)
                await self._checkin(handle)

    async def script_login(
        self,
        request: FetchRequest,
        script: str,
        argument: Mapping[str, str],
        success_selector: str | None,
    ) -> ScriptLogin:
        """Log in the way a person would: open ``request.url`` in a context of its own
        (never a pooled tab), call ``script`` with ``argument`` (a navigation it starts,
        a submitted form, is waited for), then look for ``success_selector`` on the page
        it ended on, waiting up to the timeout for it. The context's cookies, HttpOnly
        ones included, are the session. RuntimeError when the script throws; the
        engine's errors (timeout, connection, blocked_address) otherwise."""
        async with self._slots:
            handle = await self._checkout(_lean(request))
            context: BrowserContext | None = None
            try:
                context = await handle.browser.new_context(
                    user_agent=request.user_agent,
                    extra_http_headers=request.headers or None,
                    service_workers="block",
                )
                if request.cookies:
                    await context.add_cookies(_host_cookies(request))
                page = await context.new_page()
                # Playwright's own timeouts end each step within the login's; this one is
                # for a driver that does not answer at all.
                async with asyncio.timeout(request.timeout_s + _LOGIN_GRACE_S):
                    matched = await _run_login(page, request, script, argument, success_selector)
                cookies = await context.cookies()
                return ScriptLogin(url=page.url, cookies=list(cookies), matched=matched)
            except (TimeoutError, PlaywrightTimeoutError) as exc:
                raise classify.timeout(request.url, request.timeout_s) from exc
            except PlaywrightError as exc:
                crashed = not handle.browser.is_connected()
                raise _navigation_error(exc, request.url, crashed) from exc
            finally:
                if context is not None:
                    await self._close_within(context.close())
                await self._checkin(handle)

    async def _refusal(
        self, tab: _Tab | None, request: FetchRequest, exc: PlaywrightError
    ) -> TrawlError | None:
        """Why the guard proxy did not connect a failed navigation: BlockedAddressError
        naming the refused hop, or the connection error it met; None when it was not that.
        When the page's own URL connected, a redirect's hop is what failed, and Chromium's
        error does not name it: the navigation is made again once, watching which
        main-frame request fails (watching every page's requests would cost every page)."""
        url = request.url
        message = exc.message or str(exc)
        if self._proxy is None or not any(code in message for code in _PROXY_NET_ERRORS):
            return None
        hops = []
        if tab is not None and self._proxy.failure(url) is None:
            hop = await _failed_hop(tab.page, request)
            if hop is not None and hop != url:
                hops.append(hop)
        for hop in [*hops, url]:
            failure = self._proxy.failure(hop)
            if isinstance(failure, BlockedAddressError):
                return failure.for_url(hop, None if hop == url else url)
            if failure is not None:
                where = "" if hop == url else f"{hop}: "
                return classify.connection(url, f"{where}{type(failure).__name__}: {failure}")
        return None

    async def _tab(self, handle: _Browser, request: FetchRequest) -> _Tab:
        """An idle tab of ``handle`` fit for ``request`` (same session and settings), else a
        new tab in the session's context (a new context when it has none, or its context
        has served its quota), after closing the oldest idle tabs to make room."""
        key = _tab_key(request)
        await self._close_stale()
        for index in range(len(self._idle) - 1, -1, -1):
            tab = self._idle[index]
            owner = tab.owner
            if owner.handle is handle and owner.key == key and not owner.retired:
                del self._idle[index]
                if tab.page.is_closed():
                    await self._release(tab)
                    continue
                self._in_use += 1
                self._count(owner)
                return tab
        while self._idle and len(self._idle) + self._in_use >= self._max_contexts:
            await self._discard(self._idle.pop(0))
        self._in_use += 1
        try:
            owner = await self._context_for(handle, request, key)
            owner.tabs += 1
            try:
                page = await owner.context.new_page()
                tab = _Tab(owner, page)
                tab.session = await owner.context.new_cdp_session(page)
                await _intercept(tab, request)
            except BaseException:
                owner.tabs -= 1
                if owner.tabs == 0:
                    await self._close_context(owner)
                raise
        except BaseException:
            self._in_use -= 1
            raise
        self.tabs_opened += 1
        self._count(owner)
        return tab

    def _count(self, owner: _Context) -> None:
        """One more page for ``owner``; retired (for new tasks) once it served its quota."""
        owner.served += 1
        if owner.served >= self._pages_per_context:
            self._retire(owner)

    def _retire(self, owner: _Context) -> None:
        owner.retired = True
        if self._contexts.get(owner.key) is owner:
            del self._contexts[owner.key]

    async def _context_for(self, handle: _Browser, request: FetchRequest, key: _TabKey) -> _Context:
        """The open context of ``key`` on ``handle``, or a new one."""
        async with self._context_lock:
            owner = self._contexts.get(key)
            if owner is not None and owner.handle is handle and not owner.retired:
                return owner
            proxy = await self._context_proxy(request.proxy) if request.proxy else None
            # The workflow's headers are not the context's extra headers: those go to every
            # host the page asks (its CDN, its analytics), and a header may be a credential.
            context = await handle.browser.new_context(
                user_agent=request.user_agent,
                service_workers="block",
                proxy=proxy,
            )
            self.contexts_opened += 1
            owner = _Context(handle, context, key)
            self._contexts[key] = owner
            return owner

    async def _context_proxy(self, proxy: str) -> ProxySettings:
        """A workflow's proxy (``http://[user:password@]host:port``) for a new context, in
        place of the guard proxy: its host resolved and checked by the guard here, and
        Chromium given the checked address, so the proxy is never one the guard refuses.
        The pages' own hosts are resolved by that proxy (docs/proxies.md)."""
        try:
            parsed = URL(proxy)
            host, port = parsed.raw_host or "", parsed.port
        except ValueError:  # the message could hold the credentials: not passed on
            raise PermanentError(
                "the proxy URL does not parse", error_class="proxy_config"
            ) from None
        name = f"{host}:{port}"
        try:
            address = (await self._guard.checked_addresses(host))[0]
        except BlockedAddressError as exc:
            raise exc.for_url(f"proxy {name}") from None
        except OSError as exc:  # as the http engine: a connection error, no rest
            raise classify.connection(f"proxy {name}", f"cannot resolve it: {exc}") from None
        server = f"[{address}]" if ":" in address else address
        settings = ProxySettings(server=f"http://{server}:{port}")
        if parsed.user is not None:
            settings["username"] = parsed.user
            settings["password"] = parsed.password or ""
        return settings

    async def _return_tab(self, tab: _Tab, healthy: bool) -> None:
        """Close the pages the task opened; keep a healthy tab for the next task of its
        session; close it otherwise, with its whole context when it was poisoned (a
        renderer that may be spinning, shared by the context's tabs)."""
        self._in_use -= 1
        owner = tab.owner
        if tab.poisoned:
            await self._close_context(owner)
            return
        reusable = (
            healthy
            and not owner.retired
            and not tab.crashed.is_set()
            and owner.handle.usable
            and not tab.page.is_closed()
        )
        if reusable:
            reusable = await self._close_popups(tab)
        if reusable:
            tab.idle_since = asyncio.get_running_loop().time()
            self._idle.append(tab)
        else:
            await self._release(tab)

    async def _close_popups(self, tab: _Tab) -> bool:
        """Close the pages the tab opened during its task (every page of its context but
        the tab, when it is the context's only tab); False if one would not close (the tab
        is then not fit for reuse)."""
        popups, tab.popups = tab.popups, []
        if tab.owner.tabs == 1:
            popups = [page for page in tab.context.pages if page is not tab.page]
        for page in popups:
            if not page.is_closed() and not await self._close_within(page.close()):
                return False
        return True

    async def _close_stale(self) -> None:
        """Close the tabs idle for longer than ``idle_timeout_s``."""
        horizon = asyncio.get_running_loop().time() - self._idle_timeout_s
        while self._idle and self._idle[0].idle_since < horizon:
            await self._discard(self._idle.pop(0))

    async def _discard(self, tab: _Tab) -> None:
        """Close an idle tab (to make room, or idle too long)."""
        await self._release(tab)

    async def _release(self, tab: _Tab) -> None:
        """Close the tab; its context too when it was the last one, so that a context is
        never left open without tabs. A close that hangs (a wedged browser) retires the
        browser: the next task launches a new one and this one is closed when its last
        page is done."""
        owner = tab.owner
        owner.tabs -= 1
        if owner.tabs <= 0:
            await self._close_context(owner)
            return
        tab.popups.append(tab.page)
        for page in tab.popups:
            if not page.is_closed() and not await self._close_within(page.close()):
                self._wedged(owner)
                return

    async def _close_context(self, owner: _Context) -> None:
        """Close a context, which ends its renderers and every page it opened, tabs in use
        included (their tasks fail as crashed: retried)."""
        self._retire(owner)
        stale = [tab for tab in self._idle if tab.owner is owner]
        if stale:
            self._idle = [tab for tab in self._idle if tab.owner is not owner]
        if not await self._close_within(owner.context.close()):
            self._wedged(owner)

    def _wedged(self, owner: _Context) -> None:
        _log.warning(
            "closing a browser context took over %.1f s; replacing the browser",
            self._close_timeout_s,
        )
        owner.handle.retired = True

    async def _close_within(self, closing: Awaitable[None]) -> bool:
        """Await ``closing`` for at most ``close_timeout_s``; False when it took longer."""
        try:
            await asyncio.wait_for(_close_quietly(closing), self._close_timeout_s)
        except TimeoutError:
            return False
        return True

    async def _launch(self, lean: bool) -> _Browser:
        assert self._playwright is not None, "BrowserFetcher.start() was not called"
        proxy = ProxySettings(server=self._proxy.url) if self._proxy is not None else None
        browser = await self._playwright.chromium.launch(
            executable_path=self._executable_path,
            headless=True,
            args=[*self._args, *_LEAN_ARGS] if lean else self._args,
            timeout=self._launch_timeout_s * 1000,
            proxy=proxy,
        )
        handle = _Browser(browser, lean)
        self._browsers.add(handle)
        self.launches += 1
        return handle

    async def _checkout(self, lean: bool) -> _Browser:
        """The browser of the kind for the next page: the live one, or a new one when it
        has served its quota or died (or there is none yet). Counts the page against it."""
        current = self._live.get(lean)
        if current is None or not current.usable:
            async with self._launch_lock:
                current = self._live.get(lean)
                if current is None or not current.usable:
                    if self._playwright is None:
                        raise RuntimeError("BrowserFetcher.start() was not called")
                    old = current
                    try:
                        current = await self._launch(lean)
                        self._live[lean] = current
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
            if self._live.get(handle.lean) is handle:
                del self._live[handle.lean]
            await self._dispose(handle)

    async def _dispose(self, handle: _Browser) -> None:
        owners = {id(tab.owner): tab.owner for tab in self._idle if tab.handle is handle}
        for owner in owners.values():
            await self._close_context(owner)
        if handle in self._browsers:
            self._browsers.discard(handle)
            if not await self._close_within(handle.browser.close()):
                _log.warning("a retired browser did not close; Playwright ends it on close()")


async def _failed_hop(page: PlaywrightPage, request: FetchRequest) -> str | None:
    """Navigate to ``request.url`` again and say which main-frame request failed (the URL
    of a redirect's hop, say); None when none did."""
    failed: list[str] = []

    def request_failed(sent: PlaywrightRequest) -> None:
        with contextlib.suppress(PlaywrightError):  # a request with no frame
            if sent.is_navigation_request() and sent.frame == page.main_frame:
                failed.append(sent.url)

    page.on("requestfailed", request_failed)
    try:
        with contextlib.suppress(PlaywrightError, TimeoutError):
            await asyncio.wait_for(
                page.goto(request.url, wait_until="commit", timeout=request.timeout_s * 1000),
                request.timeout_s,
            )
    finally:
        page.remove_listener("requestfailed", request_failed)
    return failed[-1] if failed else None


async def _load(tab: _Tab, request: FetchRequest) -> tuple[str, int, dict[str, str]]:
    """Navigate, judge the response as the http engine would, and read the DOM."""
    # Playwright's own timeout too, so the driver abandons the navigation when we do.
    response = await tab.page.goto(
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
    html = await read_html(tab.session, tab.page, request.url, request.max_body_bytes)
    return html, status, headers


@dataclass(frozen=True, slots=True)
class ScriptLogin:
    """How a login script ended: the page's URL, the context's cookies (as Playwright
    gives them: a host-only cookie's domain has no leading dot) and whether the success
    selector matched (True when there is none)."""

    url: str
    cookies: list[Cookie]
    matched: bool


async def _run_login(
    page: PlaywrightPage,
    request: FetchRequest,
    script: str,
    argument: Mapping[str, str],
    success_selector: str | None,
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout_s

    def left_ms() -> float:
        return max(1.0, (deadline - loop.time()) * 1000)

    wait_until = cast(LoadState, request.wait_until)
    response = await page.goto(request.url, wait_until=wait_until, timeout=left_ms())
    status = response.status if response is not None else 200
    error = classify.status_error(status, request.url, None)
    if error is not None:
        raise error
    try:
        await page.evaluate(script, dict(argument))
    except PlaywrightError as exc:
        message = exc.message or str(exc)
        if not any(marker in message for marker in _NAVIGATED_AWAY):
            raise RuntimeError(f"the login script failed: {message.splitlines()[0]}") from None
    await page.wait_for_load_state(wait_until, timeout=left_ms())
    if success_selector is None:
        return True
    try:
        await page.wait_for_selector(success_selector, state="attached", timeout=left_ms())
    except PlaywrightTimeoutError:
        return False
    return True


_LOGIN_GRACE_S = 5.0
# What evaluate raises when the script submitted a form or navigated: the login went on.
_NAVIGATED_AWAY = ("Execution context was destroyed", "navigation", "Target page, context")


def _host_cookies(request: FetchRequest) -> list[SetCookieParam]:
    """The request's cookies for its host, as Playwright adds them to a context."""
    host = URL(request.url).raw_host or ""
    return [
        {"name": name, "value": value, "domain": host, "path": "/"}
        for name, value in request.cookies.items()
    ]


# Playwright's resource types (what ``block_resources`` names) as the DevTools protocol's.
_CDP_RESOURCE_TYPES = {
    "document": "Document",
    "stylesheet": "Stylesheet",
    "image": "Image",
    "media": "Media",
    "font": "Font",
    "script": "Script",
    "texttrack": "TextTrack",
    "xhr": "XHR",
    "fetch": "Fetch",
    "eventsource": "EventSource",
    "websocket": "WebSocket",
    "manifest": "Manifest",
    "other": "Other",
}


async def _intercept(tab: _Tab, request: FetchRequest) -> None:
    """Set up a new tab's request handling: none when the workflow has no headers and
    blocks nothing (every request goes straight through the browser). Blocked resource
    types alone are refused by the browser's own interception, asked to stop only
    requests of those types (``Fetch.enable`` with resource-type patterns): the page's
    other requests never leave the browser process. Workflow headers need every request
    of the tab looked at (does it go to the page's own site?): Playwright's routing."""
    blocked = frozenset(request.block_resources)
    if request.headers:
        await tab.page.route("**/*", _router(blocked, dict(request.headers), tab))
        return
    types = sorted({_CDP_RESOURCE_TYPES[kind] for kind in blocked if kind in _CDP_RESOURCE_TYPES})
    session = tab.session
    if not types or session is None:
        return

    async def paused(event: dict[str, Any]) -> None:
        with contextlib.suppress(PlaywrightError):  # the tab closed meanwhile
            await session.send(
                "Fetch.failRequest",
                {"requestId": event["requestId"], "errorReason": "BlockedByClient"},
            )

    session.on("Fetch.requestPaused", paused)
    patterns: list[dict[str, str]] = [
        {"urlPattern": "*", "resourceType": kind, "requestStage": "Request"} for kind in types
    ]
    if "Image" in types:  # the browser's own request for the site's icon: an image too
        patterns.append({"urlPattern": "*/favicon.ico", "requestStage": "Request"})
    await session.send("Fetch.enable", {"patterns": patterns})


def _router(
    blocked: frozenset[str], headers: dict[str, str], tab: _Tab
) -> Callable[[Route], Awaitable[None]]:
    """Every request of a tab: refused when its resource type is blocked; given the
    workflow's headers when it goes to the site (origin) of the page being loaded: its
    redirects elsewhere and its third-party requests do not get them, as in the http
    engine."""

    async def handle(route: Route) -> None:
        request = route.request
        try:
            if request.resource_type in blocked:
                await route.abort("blockedbyclient")
            elif headers and origin_of(request.url) == tab.site:
                await route.continue_(headers={**await request.all_headers(), **headers})
            else:
                await route.continue_()
        except PlaywrightError:
            pass  # the tab closed while the request was on its way: nothing to route

    return handle


def _evaluator(tab: _Tab) -> Callable[[str, float], Awaitable[Any]]:
    page = tab.page

    async def evaluate(code: str, timeout_s: float) -> Any:
        """Run ``code`` in the page. TimeoutError when it runs too long (the tab is then
        discarded after the task: its renderer may still be running the script),
        RuntimeError when it throws, RetryableError ``browser_crash`` when the tab died."""
        try:
            return await asyncio.wait_for(page.evaluate(code), timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            tab.poisoned = True
            raise
        except PlaywrightError as exc:
            if tab.crashed.is_set() or page.is_closed():
                raise _crash(page.url, exc.message) from exc
            raise RuntimeError(f"script failed: {exc.message}") from exc

    return evaluate


def _proxy_unreachable(request: FetchRequest, exc: PlaywrightError) -> TrawlError | None:
    """``proxy_connection`` when Chromium could not reach a workflow's proxy."""
    message = exc.message or str(exc)
    if request.proxy is None or "net::ERR_PROXY_CONNECTION_FAILED" not in message:
        return None
    return RetryableError(
        f"{request.url}: cannot connect to its proxy (net::ERR_PROXY_CONNECTION_FAILED)",
        error_class="proxy_connection",
    )


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
