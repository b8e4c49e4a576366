"""``trawl worker``: one stateless worker process of a distributed deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from backends.clock import SystemClock
from backends.fetcher import Fetcher
from backends.state import TERMINAL_STATUSES
from trawl import logs, otel
from trawl.distributed import open_ports, worker_id
from trawl.embedded import open_robots
from trawl.listen import bind_port
from trawl.readiness import readiness_checks
from trawl.settings import Settings
from worker.assemble import Assembly, assemble
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from worker.fetchers.lazy import LazyFetcher
from worker.netguard import NetGuard
from worker.outage import StageFailed
from worker.reconcile import Reconciler, track_leases
from worker.service import DrainIncomplete, NotReady, WorkerService, serve_health

log = logging.getLogger("trawl.worker")

# How often a worker re-checks the executions it works on for completion, in case the
# worker whose flush finished the last task died before completing the execution.
SWEEP_INTERVAL_S = 15.0
# How often a worker re-reads the status of the executions it works on, to see a cancel.
STATUS_INTERVAL_S = 2.0
DISTRIBUTED_INLINE_WAIT_S = 60.0
# Of the grace period after SIGTERM, what is kept for the sink's last flush.
DRAIN_FLUSH_MARGIN_S = 2.0


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Pull and run tasks until SIGTERM/SIGINT (or ``stop``), then drain; the exit code:
    0 after a clean drain, 1 when a stage died, a backend stayed down past the outage
    budget or the grace period ran out (one log line says which)."""
    # The port first: taken, it is one line on stderr before any backend is contacted.
    sock = bind_port(settings.health_host, settings.port, host_setting="TRAWL_HEALTH_HOST")
    try:
        return await _run_worker(settings, stop or asyncio.Event(), sock)
    finally:
        sock.close()


async def _run_worker(settings: Settings, stop: asyncio.Event, sock: socket.socket) -> int:
    logs.configure(settings.log_format, redact_params=settings.redact_query_params)
    stop_telemetry = otel.configure("trawl-worker")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    name = worker_id(settings)
    grace_s = settings.shutdown_grace_s
    async with contextlib.AsyncExitStack() as stack:
        ports = await stack.enter_async_context(open_ports(settings))
        # The SSRF guard: a deployment reaches private networks only when it says so.
        guard = NetGuard(
            allow_private=settings.allow_private_networks, allow=settings.allow_networks
        )
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
            track_leases(ports),  # the reconciler's leases: worker/reconcile.py
            fetchers=fetchers,
            robots=robots,
            clock=SystemClock(),
            concurrency=settings.worker_concurrency,
            worker_id=name,
            # A Pub/Sub hand-back counts as a delivery attempt (and towards dead-lettering)
            # and holds a flow-control slot while it waits: wait in place much longer.
            max_inline_wait_s=DISTRIBUTED_INLINE_WAIT_S,
            # Tasks still running this long into the grace period are handed back, leaving
            # time to flush the finished ones.
            drain_timeout_s=max(grace_s - DRAIN_FLUSH_MARGIN_S, grace_s / 2),
            outage_budget_s=settings.backend_outage_s,
            host_policy=settings.host_policy(),
        )
        service = WorkerService(
            parts.pipeline,
            grace_s=grace_s,
            checks=readiness_checks(ports, "worker"),
            outage_budget_s=settings.backend_outage_s,
        )
        await stack.enter_async_context(
            serve_health(service, settings.health_host, settings.port, sock=sock)
        )
        sweeper = asyncio.create_task(_sweep(parts, stop, settings, name))
        log.info(
            "worker started",
            extra={
                "worker_id": name,
                "concurrency": settings.worker_concurrency,
                "allow_private_networks": settings.allow_private_networks,
            },
        )
        code = 0
        try:
            await service.run(stop)
        except (StageFailed, NotReady, DrainIncomplete) as exc:
            # One line naming the cause; the non-zero exit makes the platform restart us.
            log.error("worker stopping: %s", exc, extra={"worker_id": name})
            code = 1
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            calls = dict(getattr(ports.queue, "calls", {}))
            log.info("worker stopped", extra={"worker_id": name, "pubsub_calls": calls})
            if stop_telemetry is not None:
                stop_telemetry()  # flush spans and metrics
        return code


async def _sweep(
    parts: Assembly, stop: asyncio.Event, settings: Settings | None = None, name: str = "worker"
) -> None:
    """See cancels every few seconds; every sweep round, complete executions whose last task
    finished without completing them, renew this worker's task leases and, in its turn,
    re-publish lost tasks and settle cancels (worker/reconcile.py)."""
    settings = settings or Settings()
    reconciler = Reconciler.of(
        parts.ports,
        name,
        reconcile_after_s=settings.reconcile_after_s,
        interval_s=SWEEP_INTERVAL_S,
    )
    loop = asyncio.get_running_loop()
    next_sweep = loop.time()  # the first round at once: others see this worker is running
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_INTERVAL_S)
        for execution_id in parts.contexts.known():
            try:
                execution = await parts.contexts.refresh_status(execution_id)
                if execution is not None and execution.status == "cancelled":
                    # Lease what this worker still holds of it: its export waits for them.
                    await reconciler.renew_leases(only=execution_id)
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
        try:
            await reconciler.round()
        except Exception as exc:  # a backend hiccup: the next sweep tries again
            log.warning("reconcile sweep failed: %s", exc)
