"""``POST /v1/preview``: one phase of a workflow on one URL, nothing enqueued or written."""

from __future__ import annotations

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from backends.errors import TrawlError
from orchestrator.admission import admit_body, admit_object
from orchestrator.errors import COMMON, TooLarge, Unprocessable
from orchestrator.models import PreviewOut, PreviewRequest
from orchestrator.quotas import preview_slot
from orchestrator.services import Services, ServicesDep, Tenant
from worker.preview import phase_only, preview_page
from workflows import Problem, Workflow, WorkflowInvalid
from workflows.urls import BadUrl, canonicalize


class PreviewController(Controller):
    path = "/v1/preview"
    tags = ["preview"]

    @post("/", status_code=200, raises=[*COMMON, TooLarge, Unprocessable])
    async def preview(
        self, data: JSONBody[PreviewRequest], services: ServicesDep, tenant: Tenant
    ) -> PreviewOut:
        """The record the phase makes of the page and each link with the phase it would go
        to (or why it would be dropped). 422 for an invalid workflow, a URL the deployment
        may not fetch, or a page that cannot be fetched."""
        workflow = await to_workflow(services, tenant, data.workflow)
        phase = data.phase or workflow.first_phase
        if phase not in {p.name for p in workflow.phases}:
            names = ", ".join(p.name for p in workflow.phases)
            raise WorkflowInvalid([Problem("phase", f"no phase {phase!r} (the phases: {names})")])
        try:
            url = canonicalize(data.url)
        except BadUrl as exc:
            raise WorkflowInvalid([Problem("url", str(exc))]) from None
        await services.guard.check_url(url)
        try:
            async with (
                preview_slot(services.ports.limiter, tenant, services.limits.quotas),
                services.open_fetchers(phase_only(workflow, phase)) as fetchers,
            ):
                report = await preview_page(
                    workflow, url, phase, data.depth, fetchers, clock=services.clock
                )
        except TrawlError as exc:
            raise Unprocessable(
                detail=str(exc) if url in str(exc) else f"{url}: {exc}",
                extra={"error_class": exc.error_class},
            ) from None
        return msgspec.convert(report, PreviewOut)


async def to_workflow(
    services: Services, tenant: str, document: dict[str, object] | str
) -> Workflow:
    try:
        if isinstance(document, str):
            return await admit_body(services, tenant, document.encode(), "yaml")
        return await admit_object(services, tenant, document)
    except WorkflowInvalid as exc:
        # Paths inside the document, under the request's ``workflow`` field.
        raise WorkflowInvalid(
            [
                Problem(f"workflow.{p.path}" if p.path else "workflow", p.message)
                for p in exc.problems
            ]
        ) from None
