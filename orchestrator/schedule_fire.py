"""One fire of a schedule: skip it while the previous execution runs (``overlap: skip``),
else start the workflow exactly as ``POST /v1/workflows/{name}/executions`` does: the
stored workflow with the schedule's overrides, checked again within the ceilings, its start
URLs and webhook through the guard, under the tenant's cap of running executions, through
``worker/start.py``.

Each fire's execution has an id derived from the schedule and the time the fire is for, so
a fire started twice (its scheduler died after starting it and before recording it, and
another took the schedule over) is one execution: the second start finds it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from litestar.exceptions import HTTPException

from backends.errors import InvalidInputError, RetryableError, TrawlError
from backends.state import (
    TERMINAL_STATUSES,
    Execution,
    Schedule,
    ScheduleFire,
    ScheduleOutcome,
)
from orchestrator.admission import admit_start
from orchestrator.executions_api import check_start_urls, start_under_limits
from orchestrator.services import Services
from orchestrator.webhook_api import check_webhook
from worker.start import ActiveCapReached
from workflows import WorkflowInvalid
from workflows.isolated import OffloadFailed

log = logging.getLogger("trawl.scheduler")

# Execution ids of fires: uuid5(FIRE_NAMESPACE, "<schedule id>|<fire time, UTC ISO>").hex
FIRE_NAMESPACE = uuid.UUID("5b0c2f6e-62a4-4d1e-9a53-3f6a0f7c1d21")
MAX_REASON_PROBLEMS = 5


class FireRefused(Exception):
    """The fire's execution could not be started; the message says why, for its history."""


def fire_execution_id(schedule_id: str, scheduled_for: datetime) -> str:
    """The id of the execution the fire due at ``scheduled_for`` starts."""
    return uuid.uuid5(FIRE_NAMESPACE, f"{schedule_id}|{scheduled_for.isoformat()}").hex


async def fire(
    services: Services,
    schedule: Schedule,
    scheduled_for: datetime,
    *,
    note: str | None = None,
) -> ScheduleFire:
    """Handle the fire due at ``scheduled_for`` now: started, skipped for overlap, or
    failed to start with the reason (``note`` goes before it: why the fire is late). A
    backend that does not answer (RetryableError) is raised: the fire is tried again."""
    now = services.clock.wall()

    def outcome(
        kind: ScheduleOutcome, *, execution_id: str | None = None, why: str | None = None
    ) -> ScheduleFire:
        reason = "; ".join(r for r in (note, why) if r) or None
        return ScheduleFire(
            scheduled_for=scheduled_for,
            at=now,
            outcome=kind,
            execution_id=execution_id,
            reason=reason,
        )

    previous = await _running_previous(services, schedule)
    if previous is not None:
        why = f"execution {previous.id} of the last fire is still {previous.status}"
        return outcome("skipped_overlap", why=why)
    try:
        execution = await start_fire(services, schedule, scheduled_for)
    except FireRefused as refused:
        log.info(
            "scheduled execution not started",
            extra={"schedule": schedule.id, "tenant": schedule.tenant, "reason": str(refused)},
        )
        return outcome("failed_to_start", why=str(refused))
    log.info(
        "scheduled execution started",
        extra={"schedule": schedule.id, "tenant": schedule.tenant, "execution": execution.id},
    )
    return outcome("started", execution_id=execution.id)


async def _running_previous(services: Services, schedule: Schedule) -> Execution | None:
    """The schedule's last execution while it is pending or running, when overlap is
    skipped."""
    if schedule.overlap != "skip" or schedule.last_execution_id is None:
        return None
    previous = await services.ports.state.get_execution(schedule.last_execution_id)
    if previous is None or previous.status in TERMINAL_STATUSES:
        return None
    return previous


async def start_fire(services: Services, schedule: Schedule, scheduled_for: datetime) -> Execution:
    """Start the fire's execution (or find it, started already); FireRefused saying why
    it cannot be started; RetryableError when a backend does not answer."""
    state = services.ports.state
    execution_id = fire_execution_id(schedule.id, scheduled_for)
    existing = await state.get_execution(execution_id)
    if existing is not None:
        return existing
    try:
        return await _start(services, schedule, execution_id)
    except (FireRefused, RetryableError):
        raise
    except InvalidInputError as error:
        if error.error_class == "conflict":  # another scheduler started it meanwhile
            started = await state.get_execution(execution_id)
            if started is not None:
                return started
        raise FireRefused(str(error)) from None
    except TrawlError as error:
        raise FireRefused(str(error)) from None
    except Exception as error:  # a bug must not stop the schedule: say so in its history
        log.exception("scheduled start failed", extra={"schedule": schedule.id})
        raise FireRefused(f"internal error ({type(error).__name__}); see the log") from None


async def _start(services: Services, schedule: Schedule, execution_id: str) -> Execution:
    tenant, name = schedule.tenant, schedule.workflow
    stored = await services.ports.state.get_workflow(tenant, name, schedule.workflow_version)
    if stored is None:
        which = f" version {schedule.workflow_version}" if schedule.workflow_version else ""
        raise FireRefused(f"the tenant has no workflow {name!r}{which} any more")
    overrides = list(schedule.overrides)
    try:
        workflow = await admit_start(services, tenant, stored.spec_json, overrides)
        await check_start_urls(services, workflow.start_urls)
        await check_webhook(services, workflow, schedule.webhook)
    except WorkflowInvalid as invalid:
        problems = "; ".join(str(p) for p in invalid.problems[:MAX_REASON_PROBLEMS])
        more = len(invalid.problems) - MAX_REASON_PROBLEMS
        tail = f" (and {more} more)" if more > 0 else ""
        refused = f"workflow {name!r} v{stored.version} is refused now: {problems}{tail}"
        raise FireRefused(refused) from None
    except OffloadFailed as error:
        raise FireRefused(f"the workflow could not be checked: {error}") from None
    except HTTPException as error:  # the webhook refused, or the tenant's checks are busy
        raise FireRefused(error.detail) from None
    params: dict[str, object] = {"set": overrides} if overrides else {}
    if schedule.webhook is not None:
        params["webhook"] = schedule.webhook
    params["schedule_id"] = schedule.id
    cap = services.limits.max_running_executions
    try:
        return await start_under_limits(
            services,
            workflow,
            tenant=tenant,
            version=stored.version,
            params=params,
            execution_id=execution_id,
        )
    except ActiveCapReached:
        raise FireRefused(
            f"{cap} executions are already running for this tenant, the most it may have "
            "(TRAWL_MAX_RUNNING_EXECUTIONS)"
        ) from None
