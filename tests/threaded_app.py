"""Serve an aiohttp app on 127.0.0.1:<free port> from a thread with its own event loop.

The tests' local sites all need the same thing: a server that answers while the test's own
event loop is busy (or blocked in ``trawl run``, which runs a loop of its own), reachable
from any loop, started and stopped from synchronous code. ``ThreadedApp`` is that server,
once: a site subclasses it (or wraps a factory in it) and keeps only its pages.

The app is built in the server's thread by a factory, so one ``ThreadedApp`` can be started
again after ``stop`` (an ``aiohttp`` application serves once; a ``web.Application`` is also
a factory of itself, good for one start). Extra servers an app needs for its lifetime (the
proxy lab's proxies) belong in its ``cleanup_ctx``: they start before the app answers and
close with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

AppFactory = Callable[[], web.Application]
RequestKey = Callable[[web.Request], str]


def by_path(request: web.Request) -> str:
    """Count requests by path, without the query string."""
    return request.path


def by_path_qs(request: web.Request) -> str:
    """Count requests by path and query string."""
    return request.path_qs


class ThreadedApp:
    """An aiohttp app on ``host``:<free port>, served from a daemon thread's event loop.

    ``start`` returns once the port accepts connections (or raises, naming the site, if
    the app failed to start or did not within the timeout); ``stop`` closes every connection
    and joins the thread (or raises if it would not stop, or if serving failed). Used as a
    context manager, it starts on entry and stops on exit.

    With ``count_by``, a middleware (the outermost) counts every request, 404s included, by
    that key into ``request_counts``; a handler reading ``count`` sees its own request
    counted already, and no other one in between (the loop runs the handler straight after
    the middleware's increment).
    """

    def __init__(
        self,
        app: AppFactory,
        *,
        host: str = "127.0.0.1",
        name: str = "threaded-app",
        label: str = "the test site",
        count_by: RequestKey | None = None,
        shutdown_timeout: float = 1.0,
        handler_cancellation: bool = False,
    ) -> None:
        self.host = host
        self.port = 0
        self.request_counts: Counter[str] = Counter()
        self._app = app
        self._name = name  # the thread's, for stack dumps
        self._label = label  # for errors: "the sitemap site did not start within 10 s"
        self._count_by = count_by
        self._shutdown_timeout = shutdown_timeout
        # True: a client that gives up cancels its handler instead of leaving it running
        # until shutdown (aiohttp's default is to let handlers finish).
        self._handler_cancellation = handler_cancellation
        self._counts_lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- addresses

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    # -- request counts

    def count(self, key: str) -> int:
        """Requests counted under ``key`` (a path, with ``by_path``) so far."""
        with self._counts_lock:
            return self._counting()[key]

    def total_requests(self) -> int:
        """Every request counted so far."""
        with self._counts_lock:
            return self._counting().total()

    def _counting(self) -> Counter[str]:
        if self._count_by is None:
            raise RuntimeError(f"{self._label} does not count requests (no count_by)")
        return self.request_counts

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        assert self._count_by is not None
        key = self._count_by(request)
        with self._counts_lock:
            self.request_counts[key] += 1
        return await handler(request)

    # -- lifecycle

    def start(self, timeout_s: float = 10.0) -> Self:
        """Serve; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{self._label} is already running")
        self._ready.clear()
        self._error = None
        self._loop = self._stop = None  # a previous run's, closed
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{self._label} did not start within {timeout_s:g} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            self._thread = None
            raise RuntimeError(f"{self._label} failed to start") from self._error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread (its loop closes every connection)."""
        thread = self._thread
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"{self._label} did not stop within {timeout_s:g} s")
        self._thread = None
        if self._error is not None:  # it served, then failed (while stopping, say)
            raise RuntimeError(f"{self._label} failed while serving") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # asyncio.Runner, as asyncio.run: on the way out it cancels what is left (a client
        # connection still open), shuts async generators and the default executor down.
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(self._serve())
            except BaseException as exc:
                self._error = exc
            finally:
                self._ready.set()  # a server that failed to start must not hang the test

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = self._app()
        if self._count_by is not None:
            app.middlewares.insert(0, self._count)
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            handler_cancellation=self._handler_cancellation,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
