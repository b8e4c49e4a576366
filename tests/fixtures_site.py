"""Fixtures for the fetcher tests: the local test site, Chromium, and started fetchers.

tests/conftest.py imports these names: ``site``, ``http_fetcher``, ``chromium_path``,
``browser_fetcher``. ``browser_fetcher`` is module-scoped on a module-scoped event loop (a
browser launch costs a second or two); a test module that uses it marks its tests with
``pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.site import SiteServer
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher


def find_chromium() -> str | None:
    """TRAWL_CHROMIUM_PATH, else a chromium on PATH."""
    configured = os.environ.get("TRAWL_CHROMIUM_PATH")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def site() -> Iterator[SiteServer]:
    """The test site, one server for the whole session; its ``log`` records every request."""
    with SiteServer() as server:
        yield server


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium binary the browser tests use; a clear failure when there is none."""
    path = find_chromium()
    if path is None or not os.access(path, os.X_OK):
        pytest.fail(
            "no Chromium for the browser tests: set TRAWL_CHROMIUM_PATH to a Chromium binary "
            "or install one on PATH (`make system` does: apt-get install chromium)"
            + (f"; TRAWL_CHROMIUM_PATH={path!r} is not executable" if path else ""),
            pytrace=False,
        )
    return path


@pytest_asyncio.fixture
async def http_fetcher() -> AsyncIterator[HttpFetcher]:
    """A started HttpFetcher, closed after the test."""
    fetcher = HttpFetcher()
    await fetcher.start()
    try:
        yield fetcher
    finally:
        await fetcher.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser_fetcher(chromium_path: str) -> AsyncIterator[BrowserFetcher]:
    """A started BrowserFetcher shared by a test module."""
    fetcher = BrowserFetcher(executable_path=chromium_path)
    await fetcher.start()
    try:
        yield fetcher
    finally:
        await fetcher.close()
