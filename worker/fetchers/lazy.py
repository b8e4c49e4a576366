"""A fetcher started on first use: a worker does not know which engines its tasks need, and
a browser it never uses should cost nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from backends.fetcher import Fetcher, FetchRequest
from nodes.page import Page


class LazyFetcher(Fetcher):
    def __init__(self, make: Callable[[], Fetcher]) -> None:
        self._make = make
        self._fetcher: Fetcher | None = None
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._fetcher is not None

    async def fetcher(self) -> Fetcher:
        """The fetcher itself, started now if it was not (a login uses more than ``open``)."""
        return await self._get()

    async def _get(self) -> Fetcher:
        if self._fetcher is None:
            async with self._lock:
                if self._fetcher is None:
                    fetcher = self._make()
                    await fetcher.start()
                    self._fetcher = fetcher
        return self._fetcher

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        fetcher = await self._get()
        async with fetcher.open(request) as page:
            yield page

    async def close(self) -> None:
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            await fetcher.close()
