"""``trawl orchestrator`` (the HTTP API over the distributed backends) and ``trawl keys``."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping

import uvicorn

from backends.fetcher import Fetcher
from orchestrator import Services, create_app
from orchestrator.quotas import Quotas
from orchestrator.services import Limits
from trawl import logs, otel
from trawl.distributed import open_ports
from trawl.embedded import open_fetchers
from trawl.listen import bind_port
from trawl.readiness import readiness_checks
from trawl.settings import Settings
from worker.assemble import Ports
from worker.netguard import NetGuard
from workflows.spec import Workflow

log = logging.getLogger("trawl.orchestrator")


def services_for(settings: Settings, ports: Ports) -> Services:
    """The API's services over ``ports``, as this deployment's settings say."""
    guard = NetGuard(allow_private=settings.allow_private_networks, allow=settings.allow_networks)

    @contextlib.asynccontextmanager
    async def preview_fetchers(workflow: Workflow) -> AsyncIterator[Mapping[str, Fetcher]]:
        async with open_fetchers(workflow, settings, guard=guard) as (fetchers, _robots):
            yield fetchers

    return Services(
        ports=ports,
        open_fetchers=preview_fetchers,
        guard=guard,
        limits=Limits(
            max_request_bytes=settings.max_request_bytes,
            max_running_executions=settings.max_running_executions,
            stall_after_s=settings.stall_after_s,
            ceilings=settings.ceilings(),
            quotas=Quotas(
                api_requests_per_s=settings.api_requests_per_s,
                api_burst=settings.api_burst,
                previews_per_s=settings.previews_per_s,
                preview_burst=settings.preview_burst,
                previews_at_once=settings.previews_at_once,
                streams_at_once=settings.streams_at_once,
                admissions_at_once=settings.admissions_at_once,
            ),
            queue_window=settings.queue_window,
            max_secrets=settings.secrets_max_count,
            max_secret_bytes=settings.secrets_max_value_bytes,
            scheduler_tick_s=settings.scheduler_tick_s if settings.scheduler else 0.0,
            max_schedules=settings.max_schedules,
            schedule_min_interval_s=settings.schedule_min_interval_s,
            metrics_interval_s=settings.metrics_interval_s,
            retention_days=settings.retention_days,
        ),
        checks=readiness_checks(ports, "orchestrator"),
        webhook_secret=settings.webhook_secret,
    )


async def run_orchestrator(settings: Settings) -> int:
    """Serve the API until SIGTERM/SIGINT (uvicorn handles both and drains requests)."""
    # The port first: taken, it is one line on stderr before any backend is contacted.
    sock = bind_port(settings.api_host, settings.port, host_setting="TRAWL_API_HOST")
    try:
        logs.configure(settings.log_format, redact_params=settings.redact_query_params)
        stop_telemetry = otel.configure("trawl-orchestrator")
        try:
            await _serve(settings, sock)
        finally:
            if stop_telemetry is not None:
                stop_telemetry()
    finally:
        sock.close()
    return 0


async def _serve(settings: Settings, sock: socket.socket) -> None:
    async with open_ports(settings) as ports:
        services = services_for(settings, ports)
        app = create_app(services)
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.port,
            log_config=None,  # our JSON logs, not uvicorn's
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        )
        log.info("orchestrator listening", extra={"port": settings.port})
        try:
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await services.admission.close()
