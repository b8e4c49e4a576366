"""``trawl orchestrator`` (the HTTP API over the distributed backends) and ``trawl keys``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import uvicorn

from backends.fetcher import Fetcher
from orchestrator import Services, create_app
from orchestrator.auth import create_key
from orchestrator.services import Limits
from trawl import logs, otel
from trawl.distributed import open_ports, open_state, readiness_checks
from trawl.embedded import open_fetchers
from trawl.settings import Settings
from worker.assemble import Ports
from worker.netguard import NetGuard
from workflows.spec import Workflow

log = logging.getLogger("trawl.orchestrator")


def services_for(settings: Settings, ports: Ports) -> Services:
    """The API's services over ``ports``, as this deployment's settings say."""
    guard = NetGuard(allow_private=settings.allow_private_networks)

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
        ),
        checks=readiness_checks(ports),
    )


async def run_orchestrator(settings: Settings) -> None:
    """Serve the API until SIGTERM/SIGINT (uvicorn handles both and drains requests)."""
    logs.configure(settings.log_format)
    stop_telemetry = otel.configure("trawl-orchestrator")
    try:
        await _serve(settings)
    finally:
        if stop_telemetry is not None:
            stop_telemetry()


async def _serve(settings: Settings) -> None:
    async with open_ports(settings) as ports:
        app = create_app(services_for(settings, ports))
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.port,
            log_config=None,  # our JSON logs, not uvicorn's
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        )
        log.info("orchestrator listening", extra={"port": settings.port})
        await uvicorn.Server(config).serve()


async def new_key(settings: Settings, tenant: str) -> str:
    async with open_state(settings) as state:
        return await create_key(state, tenant)
