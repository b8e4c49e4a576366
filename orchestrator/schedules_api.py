"""``/v1/schedules``: create, list, read (with the history of its fires), edit (pause,
resume, new times, new overrides) and delete a tenant's schedules.

The checks are orchestrator/schedules.py's; the scheduler that fires them is
orchestrator/scheduler.py. Another tenant's schedule is a 404, as everywhere.
"""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Link, OpenAPI, OpenAPIResponse, Schema
from litestar.params import FromPath, JSONBody

from backends.state import Schedule, ScheduleFire
from orchestrator.errors import COMMON, Conflict, Unprocessable
from orchestrator.schedule_wire import (
    ScheduleCreate,
    ScheduleFireOut,
    ScheduleOut,
    ScheduleUpdate,
)
from orchestrator.schedules import (
    ScheduleCapReached,
    ScheduleEditConflict,
    create_schedule,
    edit_schedule,
    owned_schedule,
)
from orchestrator.services import ServicesDep, Tenant
from orchestrator.wire import OVERRIDE_PATTERN

STRICT_BODIES = ("ScheduleCreate", "ScheduleUpdate")


def schedule_out(schedule: Schedule, history: list[ScheduleFire] | None = None) -> ScheduleOut:
    """The API's view of a schedule (and of its newest fires, when given)."""
    s = schedule
    return ScheduleOut(
        id=s.id,
        workflow=s.workflow,
        workflow_version=s.workflow_version,
        cron=s.cron,
        timezone=s.timezone,
        set=list(s.overrides),
        webhook=s.webhook,
        enabled=s.enabled,
        overlap=s.overlap,
        missed=s.missed,
        next_run_at=s.next_run_at,
        last_run_at=s.last_run_at,
        last_outcome=s.last_outcome,
        last_execution_id=s.last_execution_id,
        counts=dict(s.counts),
        created_at=s.created_at,
        updated_at=s.updated_at,
        history=[fire_out(f) for f in history or []],
    )


def fire_out(f: ScheduleFire) -> ScheduleFireOut:
    return ScheduleFireOut(
        scheduled_for=f.scheduled_for,
        at=f.at,
        outcome=f.outcome,
        execution_id=f.execution_id,
        reason=f.reason,
        count=f.count,
    )


def _not_found(schedule_id: str) -> NotFoundException:
    return NotFoundException(detail=f"no schedule {schedule_id!r}")


class SchedulesController(Controller):
    path = "/v1/schedules"
    tags = ["schedules"]

    @post("/", status_code=201, raises=[*COMMON, Conflict, Unprocessable])
    async def create(
        self, data: JSONBody[ScheduleCreate], services: ServicesDep, tenant: Tenant
    ) -> ScheduleOut:
        """A new schedule: the workflow starts at the times ``cron`` names in ``timezone``.
        422 naming the field for a bad cron expression or time zone, an unknown workflow,
        or a start that would be refused; 409 when the tenant has its cap of schedules."""
        try:
            schedule = await create_schedule(services, tenant, data)
        except ScheduleCapReached as error:
            raise Conflict(detail=str(error)) from None
        return schedule_out(schedule)

    @get("/", raises=COMMON)
    async def list_schedules(self, services: ServicesDep, tenant: Tenant) -> list[ScheduleOut]:
        """The tenant's schedules, oldest first, each with its next and last fire."""
        return [schedule_out(s) for s in await services.ports.state.list_schedules(tenant)]

    @get("/{schedule_id:str}", raises=COMMON)
    async def get_schedule(
        self, schedule_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> ScheduleOut:
        """One schedule and its newest fires, newest first, with what came of each."""
        schedule = await owned_schedule(services, tenant, schedule_id)
        if schedule is None:
            raise _not_found(schedule_id)
        history = await services.ports.state.schedule_fires(schedule.id)
        return schedule_out(schedule, history)

    @patch("/{schedule_id:str}", raises=[*COMMON, Conflict, Unprocessable])
    async def update(
        self,
        schedule_id: FromPath[str],
        data: JSONBody[ScheduleUpdate],
        services: ServicesDep,
        tenant: Tenant,
    ) -> ScheduleOut:
        """Change the fields given: ``{"enabled": false}`` pauses it, ``{"enabled": true}``
        resumes it from its next time after now, a new ``cron`` or ``timezone`` moves its
        next fire. Checked as a new schedule is (422 naming the field)."""
        try:
            schedule = await edit_schedule(services, tenant, schedule_id, data)
        except ScheduleEditConflict as error:
            raise Conflict(detail=str(error)) from None
        if schedule is None:
            raise _not_found(schedule_id)
        history = await services.ports.state.schedule_fires(schedule.id)
        return schedule_out(schedule, history)

    @delete("/{schedule_id:str}", raises=COMMON)
    async def delete_schedule(
        self, schedule_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> None:
        """Delete it and its history; the executions it started are kept."""
        schedule = await owned_schedule(services, tenant, schedule_id)
        if schedule is None or not await services.ports.state.delete_schedule(schedule.id):
            raise _not_found(schedule_id)


def refine_schedules(schema: OpenAPI) -> None:
    """What Litestar's document leaves out of the schedule bodies (as orchestrator/openapi.py
    does for the others): unknown fields are refused, and each ``set`` item is a
    ``key=value`` override of at least two characters; and OpenAPI links from a created
    schedule to the operations on it."""
    _link_created(schema)
    schemas = (schema.components.schemas if schema.components else None) or {}
    for name in STRICT_BODIES:
        body = schemas.get(name)
        if body is None:
            continue
        body.additional_properties = False
        overrides = (body.properties or {}).get("set")
        for items in _array_items(overrides):
            items.pattern = OVERRIDE_PATTERN
            items.min_length = 2


def _link_created(schema: OpenAPI) -> None:
    paths = schema.paths or {}
    one = paths.get("/v1/schedules/{schedule_id}")
    created = paths.get("/v1/schedules")
    if one is None or created is None or created.post is None:
        return
    response = (created.post.responses or {}).get("201")
    if not isinstance(response, OpenAPIResponse):
        return
    targets = {"GetSchedule": one.get, "UpdateSchedule": one.patch, "DeleteSchedule": one.delete}
    response.links = {
        name: Link(
            operation_id=operation.operation_id,
            parameters={"schedule_id": "$response.body#/id"},
        )
        for name, operation in targets.items()
        if operation is not None
    }


def _array_items(schema: object) -> list[Schema]:
    """The item schemas of an array schema, or of the arrays in a one_of of them."""
    if not isinstance(schema, Schema):
        return []
    found = [schema.items] if isinstance(schema.items, Schema) else []
    for option in schema.one_of or []:
        found += _array_items(option)
    return found
