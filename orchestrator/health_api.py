"""``/healthz`` (the process answers) and ``/readyz`` (its backends answer), unauthenticated."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from orchestrator.models import Health, Readiness
from orchestrator.services import ServicesDep
from worker.service import run_checks


@get("/healthz", tags=["health"])
async def healthz() -> Health:
    """Alive: the process serves requests."""
    return Health(status="ok")


@get(
    "/readyz",
    tags=["health"],
    responses={
        503: ResponseSpec(Readiness, description="A backend did not answer: `down` names it")
    },
)
async def readyz(services: ServicesDep) -> Response[Readiness]:
    """Each backend answers within a short timeout; 503 names the ones that do not."""
    names = list(services.checks)
    down = await run_checks(services.checks, services.limits.check_timeout_s)
    if down:
        body = Readiness(status="unavailable", checked=names, down=down)
        return Response(body, status_code=503)
    return Response(Readiness(status="ready", checked=names), status_code=200)
