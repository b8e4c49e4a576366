"""A webhook receiver for tests: an aiohttp app on 127.0.0.1 (a free port) that records every
call it gets and answers 200, or 500 to the first calls of a path told to fail.

It runs on the test's own event loop, so the test must be awaiting (a wait with a deadline,
a request) for it to answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


@dataclass
class Receiver:
    calls: list[Call] = field(default_factory=list)
    _failures: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_first(self, path: str, count: int) -> None:
        """Answer 500 to the first ``count`` calls to ``path``."""
        self._failures[path] = count

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        left = self._failures.get(request.path, 0)
        status = 500 if left > 0 else 200
        self._failures[request.path] = max(left - 1, 0)
        self.calls.append(Call(request.path, dict(request.headers), body, status))
        return web.Response(status=status, text="no" if status >= 400 else "ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def wait_until(
    condition: Callable[[], object], *, deadline_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll ``condition`` (a function, or one returning an awaitable) until it is true;
    AssertionError naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        await asyncio.sleep(every_s)
