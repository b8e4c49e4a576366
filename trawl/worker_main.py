"""``trawl worker``: one stateless worker process of a distributed deployment.

This module reads the settings, opens the deployment's ports (``trawl/distributed.py``) and
the engines behind its SSRF guard, and serves health; the worker itself (pipeline,
readiness gate, drain, and the supervisor that sees cancels and sweeps) is
``worker.runtime.Worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from trawl import logs, otel
from trawl.distributed import open_ports, worker_id
from trawl.listen import bind_port
from trawl.readiness import readiness_checks
from trawl.settings import Settings
from worker.engines import open_engines
from worker.netguard import NetGuard
from worker.outage import StageFailed
from worker.runtime import Worker, WorkerOptions
from worker.service import DrainIncomplete, NotReady, serve_health
from worker.webhooks import WebhookOptions

log = logging.getLogger("trawl.worker")


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


def worker_options(settings: Settings, name: str) -> WorkerOptions:
    """How this deployment's workers run, from its settings."""
    return WorkerOptions(
        worker_id=name,
        concurrency=settings.concurrency(),
        grace_s=settings.shutdown_grace_s,
        outage_budget_s=settings.backend_outage_s,
        reconcile_after_s=settings.reconcile_after_s,
        host_policy=settings.host_policy(),
        webhooks=WebhookOptions(
            secret=settings.webhook_secret,
            guard=NetGuard(
                allow_private=settings.allow_private_networks, allow=settings.allow_networks
            ),
            max_attempts=settings.webhook_max_attempts,
        ),
    )


async def _run_worker(settings: Settings, stop: asyncio.Event, sock: socket.socket) -> int:
    logs.configure(settings.log_format, redact_params=settings.redact_query_params)
    stop_telemetry = otel.configure("trawl-worker")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    name = worker_id(settings)
    # The SSRF guard: a deployment reaches private networks only when it says so.
    guard = NetGuard(allow_private=settings.allow_private_networks, allow=settings.allow_networks)
    async with contextlib.AsyncExitStack() as stack:
        ports = await stack.enter_async_context(open_ports(settings))
        # No workflow: the browser starts when a task first needs it.
        fetchers, robots = await stack.enter_async_context(
            open_engines(guard, chromium_path=settings.chromium())
        )
        worker = Worker(
            ports,
            fetchers=fetchers,
            robots=robots,
            options=worker_options(settings, name),
            checks=readiness_checks(ports, "worker"),
        )
        await stack.enter_async_context(
            serve_health(worker.service, settings.health_host, settings.port, sock=sock)
        )
        log.info(
            "worker started",
            extra={
                "worker_id": name,
                "concurrency": settings.worker_concurrency,
                "autoscale": settings.worker_autoscale,
                "allow_private_networks": settings.allow_private_networks,
            },
        )
        code = 0
        try:
            await worker.run(stop)
        except (StageFailed, NotReady, DrainIncomplete) as exc:
            # One line naming the cause; the non-zero exit makes the platform restart us.
            log.error("worker stopping: %s", exc, extra={"worker_id": name})
            code = 1
        finally:
            calls = dict(getattr(ports.queue, "calls", {}))
            log.info("worker stopped", extra={"worker_id": name, "pubsub_calls": calls})
            if stop_telemetry is not None:
                stop_telemetry()  # flush spans and metrics
        return code
