"""Creating and editing schedules: the checks every way in shares (the API, the console
through it, ``trawl schedules``), so a schedule the store holds always had a valid cron
expression, a real time zone, a workflow the tenant has and a start that was accepted.

What a schedule will start is checked as a start would be (``POST .../executions``): the
workflow with the schedule's overrides, within the deployment's ceilings, its start URLs
and webhook through the guard. Each fire checks again (the workflow may have changed since);
a fire that is refused then is recorded as ``failed_to_start`` with the reason.

Bounds, server-side: at most ``Limits.max_schedules`` per tenant (TRAWL_MAX_SCHEDULES), and
no expression that fires more often than once per ``Limits.schedule_min_interval_s``
(TRAWL_SCHEDULE_MIN_INTERVAL_S).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec

from backends.errors import InvalidInputError
from backends.state import Schedule
from orchestrator.admission import admit_start
from orchestrator.cron import Cron, CronError, zone
from orchestrator.executions_api import check_start_urls
from orchestrator.schedule_wire import ScheduleCreate, ScheduleUpdate
from orchestrator.services import Services
from orchestrator.webhook_api import check_webhook
from workflows import Problem, WorkflowInvalid

EDIT_ATTEMPTS = 3  # an edit re-applied over a schedule another edit changed meanwhile


class ScheduleCapReached(Exception):
    """The tenant already has its cap of schedules."""

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"this tenant already has {cap} schedules, the most this deployment allows "
            "(TRAWL_MAX_SCHEDULES); delete one first"
        )
        self.cap = cap


class ScheduleEditConflict(Exception):
    """Other edits kept changing the schedule while this one was being applied."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a schedule would run, as it was checked."""

    workflow: str
    workflow_version: int | None
    cron: str
    timezone: str
    overrides: list[str]
    webhook: str | None


async def check_plan(services: Services, tenant: str, plan: Plan) -> Cron:
    """The plan's cron expression, once everything it would start has been checked:
    WorkflowInvalid (a 422) listing each problem with its field (``cron``, ``timezone``,
    ``workflow``, ``workflow_version``, or the override's path as a start names it)."""
    problems = []
    cron: Cron | None = None
    zone_known = True
    try:
        zone(plan.timezone)
    except CronError as error:
        problems.append(Problem(error.field, error.message))
        zone_known = False
    try:  # the expression is checked even when the zone is not known
        cron = Cron.parse(plan.cron, plan.timezone if zone_known else "UTC")
    except CronError as error:
        problems.insert(0, Problem(error.field, error.message))
    if cron is not None and zone_known:
        floor = services.limits.schedule_min_interval_s
        every = cron.min_interval_s(services.clock.wall())
        if every < floor:
            problems.append(
                Problem(
                    "cron",
                    f"fires every {every:g} s at its most frequent; this deployment allows "
                    f"one fire per {floor:g} s at most (TRAWL_SCHEDULE_MIN_INTERVAL_S)",
                )
            )
    state = services.ports.state
    stored = await state.get_workflow(tenant, plan.workflow, plan.workflow_version)
    if stored is None:
        if plan.workflow_version is not None and await state.get_workflow(tenant, plan.workflow):
            problems.append(
                Problem("workflow_version", f"workflow {plan.workflow!r} has no such version")
            )
        else:
            problems.append(
                Problem("workflow", f"no workflow {plan.workflow!r} (POST /v1/workflows)")
            )
    if problems or cron is None:
        raise WorkflowInvalid(problems)
    assert stored is not None
    workflow = await admit_start(services, tenant, stored.spec_json, plan.overrides)
    await check_start_urls(services, workflow.start_urls)
    await check_webhook(services, workflow, plan.webhook)
    return cron


async def create_schedule(services: Services, tenant: str, request: ScheduleCreate) -> Schedule:
    """A new schedule of the tenant, checked and stored; ScheduleCapReached when it has its
    cap of them."""
    plan = Plan(
        workflow=request.workflow,
        workflow_version=request.workflow_version,
        cron=request.cron,
        timezone=request.timezone,
        overrides=list(request.set),
        webhook=request.webhook,
    )
    cron = await check_plan(services, tenant, plan)
    now = services.clock.wall()
    schedule = Schedule(
        id=uuid.uuid4().hex,
        tenant=tenant,
        workflow=plan.workflow,
        workflow_version=plan.workflow_version,
        cron=cron.expression,
        timezone=plan.timezone,
        overrides=plan.overrides,
        webhook=plan.webhook,
        enabled=request.enabled,
        overlap=request.overlap,
        missed=request.missed,
        next_run_at=cron.next_after(now) if request.enabled else None,
        created_at=now,
        updated_at=now,
    )
    cap = services.limits.max_schedules
    if not await services.ports.state.create_schedule(schedule, max_per_tenant=cap):
        raise ScheduleCapReached(cap)
    return schedule


async def owned_schedule(services: Services, tenant: str, schedule_id: str) -> Schedule | None:
    """The tenant's schedule; None for a missing one and for another tenant's alike."""
    schedule = await services.ports.state.get_schedule(schedule_id)
    return schedule if schedule is not None and schedule.tenant == tenant else None


async def edit_schedule(
    services: Services, tenant: str, schedule_id: str, request: ScheduleUpdate
) -> Schedule | None:
    """The tenant's schedule with the request's fields changed (checked again when what it
    runs changed; its next fire recomputed when its times changed, or on resume); None
    when the tenant has no such schedule."""
    for _ in range(EDIT_ATTEMPTS):
        current = await owned_schedule(services, tenant, schedule_id)
        if current is None:
            return None
        edited = await _edited(services, current, request)
        try:
            return await services.ports.state.update_schedule(edited)
        except InvalidInputError as error:
            if error.error_class != "conflict":
                raise
    raise ScheduleEditConflict(
        f"schedule {schedule_id} kept changing while this edit was applied; try again"
    )


async def _edited(services: Services, current: Schedule, request: ScheduleUpdate) -> Schedule:
    changes = {
        name: value
        for name in request.__struct_fields__
        if (value := getattr(request, name)) is not msgspec.UNSET
    }
    if "set" in changes:
        changes["overrides"] = list(changes.pop("set"))
    plan = Plan(
        workflow=changes.get("workflow", current.workflow),
        workflow_version=changes.get("workflow_version", current.workflow_version),
        cron=changes.get("cron", current.cron),
        timezone=changes.get("timezone", current.timezone),
        overrides=changes.get("overrides", current.overrides),
        webhook=changes.get("webhook", current.webhook),
    )
    before = Plan(
        current.workflow,
        current.workflow_version,
        current.cron,
        current.timezone,
        current.overrides,
        current.webhook,
    )
    enabled = changes.get("enabled", current.enabled)
    next_run_at = current.next_run_at
    if plan != before or enabled != current.enabled:
        # What it runs changed: checked again. Its times changed, or it was paused or
        # resumed: its next fire is the first time after now (none while paused).
        if plan != before:
            cron = await check_plan(services, current.tenant, plan)
        else:
            cron = Cron.parse(current.cron, current.timezone)
        next_run_at = cron.next_after(services.clock.wall()) if enabled else None
    return msgspec.structs.replace(
        current,
        workflow=plan.workflow,
        workflow_version=plan.workflow_version,
        cron=" ".join(plan.cron.split()),
        timezone=plan.timezone,
        overrides=plan.overrides,
        webhook=plan.webhook,
        enabled=enabled,
        overlap=changes.get("overlap", current.overlap),
        missed=changes.get("missed", current.missed),
        next_run_at=next_run_at,
    )
