"""Executions: start one of a workflow, watch it (also as server-sent events), cancel it.

Starting publishes the start URLs (after the SSRF guard) exactly as ``trawl submit`` does.
Cancelling stops workers from taking its tasks (they re-read its status every few seconds;
tasks in flight finish or are dropped); once none is still working on one, its counters stop
and the export of what was done is written (at once when no worker is running, else within
seconds, see worker/reconcile.py). Reading one says whether it is stalled, and why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import NotFoundException, TooManyRequestsException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from backends.errors import TrawlError
from backends.state import FUNNEL_STAGES, TERMINAL_STATUSES, Execution
from orchestrator.admission import admit_start
from orchestrator.errors import COMMON, Conflict, TooLarge, Unprocessable
from orchestrator.models import (
    ErrorCount,
    ExecutionHealth,
    ExecutionOut,
    ExecutionSummary,
    FunnelRow,
    Pages,
    SitemapCounts,
    StartRequest,
)
from orchestrator.services import Services, ServicesDep, Tenant
from orchestrator.webhook_api import check_webhook
from worker.reconcile import CANCEL_SETTLE_S, LEASE_TTL_S, settle_cancel
from worker.recrawl import RecrawlRefused, RecrawlSource, check_previous
from worker.report import ExecutionReport
from worker.stall import health_of
from worker.start import ActiveCapReached, start_execution
from workflows import Problem, Workflow, WorkflowInvalid

TOP_ERRORS = 5


async def start_under_limits(
    services: Services,
    workflow: Workflow,
    *,
    tenant: str,
    version: int,
    params: dict[str, Any],
    **extra: Any,
) -> Execution:
    """``start_execution`` under the deployment's limits (running executions per tenant,
    the queue window) and clock: how the API and the scheduler start an execution.
    ActiveCapReached when the tenant is at its cap."""
    return await start_execution(
        services.ports,
        workflow,
        tenant=tenant,
        version=version,
        params=params,
        max_active=services.limits.max_running_executions,
        clock=services.clock,
        queue_window=services.limits.queue_window,
        **extra,
    )


def execution_out(report: ExecutionReport) -> ExecutionOut:
    """The API's view of an execution's report (worker/report.py)."""
    health = report.health
    return ExecutionOut(
        id=report.execution_id,
        workflow=report.workflow,
        workflow_version=report.workflow_version,
        status=report.status,
        created_at=report.created_at,
        started_at=report.started_at,
        finished_at=report.finished_at,
        error=report.error,
        overrides=report.overrides,
        pages=Pages(**msgspec.structs.asdict(report.pages)),
        records=report.records,
        pages_per_second=report.pages_per_second,
        by_phase=report.by_phase,
        by_marker=report.by_marker,
        top_errors=[ErrorCount(error_class=k, count=v) for k, v in report.top_errors(TOP_ERRORS)],
        warnings=report.warnings,
        funnel=funnel_rows(report.funnel),
        health=ExecutionHealth(state=health.state, since=health.since, cause=health.cause),
        recrawl_of=report.recrawl_of,
        changes=report.changes,
        sitemaps=None
        if report.sitemaps is None
        else SitemapCounts(**msgspec.structs.asdict(report.sitemaps)),
    )


async def current_out(services: ServicesDep, execution: Execution) -> ExecutionOut:
    """The execution as GET shows it, health included."""
    state = services.ports.state
    progress = await state.progress(execution.id)
    stall_after_s = services.limits.stall_after_s
    now = services.clock.wall()
    health = await health_of(state, execution, progress, now=now, stall_after_s=stall_after_s)
    return execution_out(ExecutionReport.of(execution, progress, now=now, health=health))


async def plain_out(services: ServicesDep, execution: Execution) -> ExecutionOut:
    """The execution as starting or cancelling it answers (health not asked)."""
    progress = await services.ports.state.progress(execution.id)
    return execution_out(ExecutionReport.of(execution, progress, now=services.clock.wall()))


def funnel_rows(funnel: dict[str, dict[str, int]]) -> list[FunnelRow]:
    """The funnel ("phase|marker" -> stage -> count) as rows, every stage in each."""
    rows = []
    for key, stages in sorted(funnel.items()):
        phase, _, marker = key.partition("|")
        counts = {s: stages.get(s, 0) for s in FUNNEL_STAGES}
        rows.append(FunnelRow(phase=phase, marker=marker or None, **counts))
    return rows


async def owned(services: ServicesDep, tenant: Tenant, execution_id: str) -> Execution:
    """The tenant's execution; 404 for a missing one and for another tenant's alike."""
    execution = await services.ports.state.get_execution(execution_id)
    if execution is None or execution.tenant != tenant:
        raise NotFoundException(detail=f"no execution {execution_id!r}")
    return execution


class StartController(Controller):
    path = "/v1/workflows/{name:str}/executions"
    tags = ["executions"]

    @post(
        "/",
        status_code=202,
        raises=[*COMMON, TooLarge, Unprocessable, Conflict],
    )
    async def start(
        self,
        name: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
        data: JSONBody[StartRequest | None] = None,
    ) -> ExecutionOut:
        """Start the latest version, with ``set`` overrides; 202 once its start URLs are
        published. 429 when the tenant already has its cap of executions running. With
        ``recrawl_of`` it recrawls that execution (docs/recrawls.md): 422 when the tenant
        has no such execution of this workflow, 409 while it runs or has no export yet."""
        state = services.ports.state
        stored = await state.get_workflow(tenant, name)
        if stored is None:
            raise NotFoundException(detail=f"no workflow {name!r}")
        overrides = list(data.set) if data is not None else []
        params: dict[str, object] = {"set": overrides} if overrides else {}
        workflow = await admit_start(services, tenant, stored.spec_json, overrides)  # 422 if bad
        await check_start_urls(services, workflow.start_urls)
        webhook = data.webhook if data is not None else None
        await check_webhook(services, workflow, webhook)  # 422 if refused
        if webhook is not None:
            params["webhook"] = webhook  # the execution's own wins over the workflow's
        recrawl = await recrawl_source(services, tenant, name, data)
        cap = services.limits.max_running_executions
        try:  # the cap is checked atomically with the creation (concurrent starts included)
            execution = await start_under_limits(
                services,
                workflow,
                tenant=tenant,
                version=stored.version,
                params=params,
                recrawl=recrawl,
            )
        except RecrawlRefused as exc:  # its export went away since it was checked
            raise refused(exc) from None
        except ActiveCapReached:
            raise TooManyRequestsException(
                detail=f"{cap} executions are already running for this tenant; wait for one "
                "to finish or cancel one"
            ) from None
        return await plain_out(services, execution)

    @get("/", raises=COMMON)
    async def list_executions(
        self,
        name: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    ) -> list[ExecutionSummary]:
        """The workflow's executions, newest first."""
        found = await services.ports.state.list_executions(
            tenant, workflow=name, limit=limit, offset=offset
        )
        return [summary_of(e) for e in found]


async def recrawl_source(
    services: ServicesDep, tenant: str, workflow: str, data: StartRequest | None
) -> RecrawlSource | None:
    """The execution a start request recrawls, checked (worker/recrawl.py); 422 or 409."""
    if data is None or data.recrawl_of is None:
        return None
    ports = services.ports
    try:
        await check_previous(
            ports.state, ports.blobs, data.recrawl_of, tenant=tenant, workflow=workflow
        )
    except RecrawlRefused as exc:
        raise refused(exc) from None
    return RecrawlSource(ports.blobs, data.recrawl_of)


def refused(exc: RecrawlRefused) -> Conflict | Unprocessable:
    """A 409 for a recrawl that is not possible yet, a 422 for one that never will be."""
    detail = f"recrawl_of: {exc}"
    return Conflict(detail=detail) if exc.conflict else Unprocessable(detail=detail)


async def check_start_urls(services: ServicesDep, urls: list[str]) -> None:
    problems = []
    for i, url in enumerate(urls):
        try:
            await services.guard.check_url(url)
        except TrawlError as exc:
            problems.append(Problem(f"start_urls[{i}]", str(exc)))
    if problems:
        raise WorkflowInvalid(problems)


class ExecutionListController(Controller):
    path = "/v1/executions"
    tags = ["executions"]

    @get("/", raises=COMMON)
    async def list_all_executions(
        self,
        services: ServicesDep,
        tenant: Tenant,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    ) -> list[ExecutionSummary]:
        """Every execution of the tenant, newest first (what the console lists)."""
        found = await services.ports.state.list_executions(tenant, limit=limit, offset=offset)
        return [summary_of(e) for e in found]


def summary_of(e: Execution) -> ExecutionSummary:
    return ExecutionSummary(
        id=e.id,
        workflow=e.workflow,
        workflow_version=e.workflow_version,
        status=e.status,
        created_at=e.created_at,
        finished_at=e.finished_at,
    )


class ExecutionsController(Controller):
    path = "/v1/executions/{execution_id:str}"
    tags = ["executions"]

    @get("/", raises=COMMON)
    async def get_execution(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> ExecutionOut:
        """Status, counters per phase and marker, pages per second, top error classes."""
        execution = await owned(services, tenant, execution_id)
        return await current_out(services, execution)

    @post("/cancel", status_code=202, raises=[*COMMON, Conflict])
    async def cancel(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> ExecutionOut:
        """Stop it: workers drop its remaining tasks; once none works on one any more, the
        counters stop and the export of what was done is written (at once when no worker is
        running), so the two agree."""
        execution = await owned(services, tenant, execution_id)
        state = services.ports.state
        moved = await state.transition(
            execution_id, "cancelled", from_statuses={"pending", "running"}
        )
        if not moved:
            current = await state.get_execution(execution_id) or execution
            raise Conflict(detail=f"execution {execution_id} is already {current.status}")
        if not await settle_cancel(
            state, services.ports.blobs, execution_id, now=services.clock.wall()
        ):
            _settle_later(services, execution_id)
        return await plain_out(services, await owned(services, tenant, execution_id))

    @get("/events", raises=COMMON, media_type="text/event-stream")
    async def events(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> ServerSentEvent:
        """Progress as server-sent events: a ``progress`` event (the execution's JSON) when
        it changes, until the execution ends; then an ``end`` event."""
        await owned(services, tenant, execution_id)
        limit = services.limits.quotas.streams_at_once
        stream = progress_events(services, execution_id)
        return ServerSentEvent(services.streams.hold(tenant, limit, stream))


_settling: set[asyncio.Task[None]] = set()


def _settle_later(services: ServicesDep, execution_id: str) -> None:
    """Write a cancelled execution's export once its workers let go (the workers' sweep does
    it too, should this process stop first)."""

    async def settle() -> None:
        deadline = asyncio.get_running_loop().time() + CANCEL_SETTLE_S + 2 * LEASE_TTL_S
        state, blobs = services.ports.state, services.ports.blobs
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1.0)
            try:
                if await settle_cancel(state, blobs, execution_id, now=services.clock.wall()):
                    return
            except TrawlError:
                continue  # a backend hiccup: try again

    task = asyncio.create_task(settle(), name=f"settle-{execution_id}")
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def progress_events(
    services: ServicesDep, execution_id: str
) -> AsyncIterator[ServerSentEventMessage]:
    state = services.ports.state
    last = b""
    while True:
        execution = await state.get_execution(execution_id)
        if execution is None:
            return
        body = msgspec.json.encode(await current_out(services, execution))
        if body != last:
            last = body
            yield ServerSentEventMessage(data=body.decode(), event="progress")
        if execution.status in TERMINAL_STATUSES:
            yield ServerSentEventMessage(data=execution.status, event="end")
            return
        await asyncio.sleep(services.limits.events_interval_s)
