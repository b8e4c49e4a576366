"""``POST /v1/preview``: one phase of a workflow on one URL, nothing enqueued or written."""

from __future__ import annotations

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from backends.errors import TrawlError
from orchestrator.errors import COMMON, TooLarge, Unprocessable
from orchestrator.models import PreviewOut, PreviewRequest
from orchestrator.services import ServicesDep, Tenant
from worker.preview import phase_only, preview_page
from workflows import Problem, Workflow, WorkflowInvalid, load_workflow, validate_data
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
        workflow = to_workflow(data.workflow, services.limits.max_request_bytes)
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
            async with services.open_fetchers(phase_only(workflow, phase)) as fetchers:
                report = await preview_page(workflow, url, phase, data.depth, fetchers)
        except TrawlError as exc:
            raise Unprocessable(
                detail=f"{url}: {exc}", extra={"error_class": exc.error_class}
            ) from None
        return msgspec.convert(report, PreviewOut)


def to_workflow(document: dict[str, object] | str, max_bytes: int) -> Workflow:
    try:
        if isinstance(document, str):
            return load_workflow(document, max_bytes=max_bytes)
        return validate_data(document)
    except WorkflowInvalid as exc:
        # Paths inside the document, under the request's ``workflow`` field.
        raise WorkflowInvalid(
            [
                Problem(f"workflow.{p.path}" if p.path else "workflow", p.message)
                for p in exc.problems
            ]
        ) from None
