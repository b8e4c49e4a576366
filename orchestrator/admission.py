"""Workflows from requests, checked off the event loop and held to the deployment's
ceilings: what the API stores, starts and previews goes through here.

The checks run in a small pool of helper processes shared by every tenant; each tenant may
have ``Quotas.admissions_at_once`` of them at once (its next one waits for its own, then gets
a 429), so one tenant sending heavy documents cannot keep every helper busy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.services import Services
from workflows import Format, Workflow
from workflows.admit import admit_data, admit_document, admit_overrides


async def _admit(services: Services, tenant: str, fn: Callable[..., Any], *args: Any) -> Workflow:
    admission = services.admission
    limit = services.limits.quotas.admissions_at_once
    async with services.admission_slots.slot(tenant, limit, admission.timeout_s, "workflow checks"):
        return await admission.run(Workflow, fn, *args)


async def admit_body(services: Services, tenant: str, data: bytes, fmt: Format) -> Workflow:
    """A workflow document from a request body (YAML or JSON text)."""
    limits = services.limits
    return await _admit(
        services, tenant, admit_document, data, fmt, limits.max_request_bytes, limits.ceilings
    )


async def admit_object(services: Services, tenant: str, data: dict[str, Any]) -> Workflow:
    """A workflow that arrived as a JSON object inside a request."""
    return await _admit(services, tenant, admit_data, data, services.limits.ceilings)


async def admit_start(
    services: Services, tenant: str, spec_json: str, overrides: list[str]
) -> Workflow:
    """A stored workflow with a start's overrides, checked again (ceilings may have been
    lowered since it was stored)."""
    return await _admit(
        services, tenant, admit_overrides, spec_json, overrides, services.limits.ceilings
    )
