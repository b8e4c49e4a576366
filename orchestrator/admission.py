"""Workflows from requests, checked off the event loop and held to the deployment's
ceilings: what the API stores, starts and previews goes through here."""

from __future__ import annotations

from typing import Any

from orchestrator.services import Services
from workflows import Format, Workflow
from workflows.admit import admit_data, admit_document, admit_overrides


async def admit_body(services: Services, data: bytes, fmt: Format) -> Workflow:
    """A workflow document from a request body (YAML or JSON text)."""
    limits = services.limits
    return await services.admission.run(
        Workflow, admit_document, data, fmt, limits.max_request_bytes, limits.ceilings
    )


async def admit_object(services: Services, data: dict[str, Any]) -> Workflow:
    """A workflow that arrived as a JSON object inside a request."""
    return await services.admission.run(Workflow, admit_data, data, services.limits.ceilings)


async def admit_start(services: Services, spec_json: str, overrides: list[str]) -> Workflow:
    """A stored workflow with a start's overrides, checked again (ceilings may have been
    lowered since it was stored)."""
    return await services.admission.run(
        Workflow, admit_overrides, spec_json, overrides, services.limits.ceilings
    )
