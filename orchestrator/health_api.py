"""``/healthz`` (the process answers) and ``/readyz`` (its backends answer), unauthenticated."""

from __future__ import annotations

import asyncio
import logging

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from orchestrator.models import Health, Readiness
from orchestrator.services import ServicesDep
from worker.outage import describe, public_reason

log = logging.getLogger(__name__)


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
    timeout = services.limits.check_timeout_s

    async def run(name: str) -> str | None:
        try:
            await asyncio.wait_for(services.checks[name](), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:
            log.info("readiness check %s failed: %s", name, describe(exc)[:500])
            return public_reason(exc)
        return None

    results = await asyncio.gather(*(run(n) for n in names))
    down = {n: r for n, r in zip(names, results, strict=True) if r is not None}
    if down:
        body = Readiness(status="unavailable", checked=names, down=down)
        return Response(body, status_code=503)
    return Response(Readiness(status="ready", checked=names), status_code=200)
