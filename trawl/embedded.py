"""Composition root of the embedded shape: fetchers, robots.txt, and ``trawl run`` itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TextIO

import aiohttp
from rich.console import Console

from backends.clock import SystemClock
from backends.errors import TrawlError
from backends.fetcher import Fetcher
from trawl.progress import ProgressDisplay, summary_table
from trawl.settings import Settings
from worker.embedded import RunResult, run_embedded
from worker.export import describe_warnings
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher, get_following_redirects, guarded_connector
from worker.netguard import NetGuard
from worker.robots import RobotsCache, RobotsFetch
from workflows.spec import Workflow

ALLOW_PRIVATE_ENV = "TRAWL_ALLOW_PRIVATE_NETWORKS"
STOPPING_NOTE = "stopping: finishing the pages in flight (Ctrl-C again to stop at once)"
_TRUE = frozenset({"1", "true", "yes", "on"})


def uses_browser(workflow: Workflow) -> bool:
    return any(workflow.engine_of(p) == "browser" for p in workflow.phases)


def embedded_guard(environ: Mapping[str, str] | None = None) -> NetGuard:
    """The SSRF guard of ``trawl run`` and ``trawl preview``: on a user's own machine private
    networks are allowed, unless TRAWL_ALLOW_PRIVATE_NETWORKS is set to a false value
    (``0``, ``false``...) in the environment (default: os.environ)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_PRIVATE_ENV, "").strip()
    return NetGuard(allow_private=not raw or raw.lower() in _TRUE)


def robots_fetch(
    session: aiohttp.ClientSession, timeout_s: float = 10.0, guard: NetGuard | None = None
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
                body = await resp.content.read(512 * 1024)
                return resp.status, body.decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TrawlError) as exc:
            raise OSError(str(exc)) from exc

    return fetch


@contextlib.asynccontextmanager
async def open_fetchers(
    workflow: Workflow,
    settings: Settings,
    *,
    guard: NetGuard | None = None,
    browser_restart_after: int = 500,
) -> AsyncIterator[tuple[dict[str, Fetcher], RobotsCache]]:
    """The fetchers a workflow needs (the browser only if a phase uses it) and robots.txt,
    all behind ``guard``; None: ``embedded_guard()``, the policy of ``trawl run``."""
    if guard is None:
        guard = embedded_guard()
    async with contextlib.AsyncExitStack() as stack:
        http = HttpFetcher(guard=guard)
        await http.start()
        stack.push_async_callback(http.close)
        fetchers: dict[str, Fetcher] = {"http": http}
        if uses_browser(workflow):
            browser = BrowserFetcher(
                executable_path=settings.chromium(),
                restart_after_pages=browser_restart_after,
                guard=guard,
            )
            await browser.start()
            stack.push_async_callback(browser.close)
            fetchers["browser"] = browser
        robots = await stack.enter_async_context(open_robots(guard))
        yield fetchers, robots


@contextlib.asynccontextmanager
async def open_robots(guard: NetGuard | None = None) -> AsyncIterator[RobotsCache]:
    """A robots.txt cache over its own HTTP session, behind ``guard`` (default: allow all)."""
    guard = guard if guard is not None else NetGuard.allow_all()
    session = aiohttp.ClientSession(
        connector=guarded_connector(guard), cookie_jar=aiohttp.DummyCookieJar()
    )
    try:
        yield RobotsCache(robots_fetch(session, guard=guard), SystemClock())
    finally:
        await session.close()


async def crawl(
    workflow: Workflow,
    *,
    out_dir: Path,
    settings: Settings,
    source_text: str = "",
    concurrency: int | None = None,
    stream: TextIO | None = None,
    handle_signals: bool = True,
    resume: bool = False,
) -> RunResult:
    """Run ``workflow`` in this process with a progress display. The first Ctrl-C (or
    SIGTERM) stops cleanly: pages in flight get a short drain, the export of what was done
    is written, and the run can be resumed. A second one stops at once (KeyboardInterrupt):
    no export, but what the store holds is still resumable. ``resume`` continues the newest
    unfinished run in ``out_dir`` (ResumeError if there is none)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = False
    display = ProgressDisplay(stream)

    def on_signal() -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # the second: out of the event loop at once
        stop.set()
        display.note(STOPPING_NOTE)

    if handle_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, on_signal)
            loop.add_signal_handler(signal.SIGTERM, on_signal)
            installed = True
    try:
        async with open_fetchers(workflow, settings) as (fetchers, robots):
            return await run_embedded(
                workflow,
                out_dir=out_dir,
                fetchers=fetchers,
                robots=robots,
                source_text=source_text,
                concurrency=concurrency or settings.worker_concurrency,
                stop=stop,
                on_progress=display.update,
                resume=resume,
            )
    finally:
        display.close()
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)


def print_summary(result: RunResult, elapsed_s: float, stream: TextIO | None = None) -> None:
    console = Console(file=stream or sys.stderr, highlight=False)
    console.print(summary_table(result.progress, elapsed_s, result.execution.status))
    p = result.progress
    if p.failures_by_class:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(p.failures_by_class.items()))
        console.print(f"failures: {failures}")
    if p.warnings:
        examples = result.export.warning_examples if result.export is not None else []
        console.print("warnings: " + describe_warnings(p.warnings, examples), soft_wrap=True)
    if result.export is not None:
        records_file = result.out_dir / result.export.export_path
        console.print(f"records: {result.export.records} in {records_file}", soft_wrap=True)
        console.print(f"summary: {result.out_dir / result.export.summary_path}", soft_wrap=True)
        if result.export.failures:
            failures_file = result.out_dir / result.export.failures_path
            console.print(
                f"failed pages: {result.export.failures} in {failures_file}", soft_wrap=True
            )
