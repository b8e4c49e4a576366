"""``trawl worker``: one stateless worker process of a distributed deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from backends.clock import SystemClock
from backends.fetcher import Fetcher
from backends.state import TERMINAL_STATUSES
from trawl import logs, otel
from trawl.distributed import open_ports, readiness_checks, worker_id
from trawl.embedded import open_robots
from trawl.settings import Settings
from worker.assemble import Assembly, assemble
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from worker.fetchers.lazy import LazyFetcher
from worker.netguard import NetGuard
from worker.service import WorkerService, serve_health

log = logging.getLogger("trawl.worker")

# How often a worker re-checks the executions it works on for completion, in case the
# worker whose flush finished the last task died before completing the execution.
SWEEP_INTERVAL_S = 15.0
# How often a worker re-reads the status of the executions it works on, to see a cancel.
STATUS_INTERVAL_S = 2.0
DISTRIBUTED_INLINE_WAIT_S = 60.0


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Pull and run tasks until SIGTERM/SIGINT (or ``stop``), then drain and exit."""
    logs.configure(settings.log_format)
    stop_telemetry = otel.configure("trawl-worker")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    name = worker_id(settings)
    async with contextlib.AsyncExitStack() as stack:
        ports = await stack.enter_async_context(open_ports(settings))
        # The SSRF guard: a deployment reaches private networks only when it says so.
        guard = NetGuard(allow_private=settings.allow_private_networks)
        http = HttpFetcher(guard=guard)
        await http.start()
        stack.push_async_callback(http.close)
        browser = LazyFetcher(
            lambda: BrowserFetcher(executable_path=settings.chromium(), guard=guard)
        )
        stack.push_async_callback(browser.close)
        fetchers: dict[str, Fetcher] = {"http": http, "browser": browser}
        robots = await stack.enter_async_context(open_robots(guard))
        parts = assemble(
            ports,
            fetchers=fetchers,
            robots=robots,
            clock=SystemClock(),
            concurrency=settings.worker_concurrency,
            worker_id=name,
            # A Pub/Sub hand-back counts as a delivery attempt (and towards dead-lettering)
            # and holds a flow-control slot while it waits: wait in place much longer.
            max_inline_wait_s=DISTRIBUTED_INLINE_WAIT_S,
        )
        service = WorkerService(
            parts.pipeline,
            grace_s=settings.shutdown_grace_s,
            checks=readiness_checks(ports, ("postgres", "redis")),
        )
        await stack.enter_async_context(serve_health(service, settings.health_host, settings.port))
        sweeper = asyncio.create_task(_sweep(parts, stop))
        log.info(
            "worker started",
            extra={
                "worker_id": name,
                "concurrency": settings.worker_concurrency,
                "allow_private_networks": settings.allow_private_networks,
            },
        )
        try:
            await service.run(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            calls = dict(getattr(ports.queue, "calls", {}))
            log.info("worker stopped", extra={"worker_id": name, "pubsub_calls": calls})
            if stop_telemetry is not None:
                stop_telemetry()  # flush spans and metrics


async def _sweep(parts: Assembly, stop: asyncio.Event) -> None:
    """See cancels every few seconds; complete executions whose last task finished
    without completing them."""
    loop = asyncio.get_running_loop()
    next_sweep = loop.time() + SWEEP_INTERVAL_S
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_INTERVAL_S)
        for execution_id in parts.contexts.known():
            try:
                execution = await parts.contexts.refresh_status(execution_id)
            except Exception as exc:  # a backend hiccup: the next round tries again
                log.warning("status refresh failed: %s", exc, extra={"execution_id": execution_id})
                continue
            if execution is None or execution.status in TERMINAL_STATUSES:
                # Nothing left to watch: without this, every execution a long-lived worker
                # ever saw would be re-read every round. A late task reloads it (and is
                # dropped, its execution having ended).
                parts.contexts.forget(execution_id)
        if loop.time() < next_sweep:
            continue
        next_sweep = loop.time() + SWEEP_INTERVAL_S
        for execution_id in parts.contexts.known():
            try:
                await parts.completion.check(execution_id)
            except Exception as exc:  # a backend hiccup: the next sweep tries again
                log.warning(
                    "completion sweep failed: %s", exc, extra={"execution_id": execution_id}
                )
