"""The bodies of the ``/v1/schedules`` routes, as msgspec Structs, light to import (the
Python client decodes them without Litestar; see orchestrator/wire.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from orchestrator.wire import In, Out, Override

# A workflow's name, as workflows/spec.py has it (not imported: this module stays light).
WORKFLOW_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
WorkflowName = Annotated[str, Meta(pattern=WORKFLOW_NAME_PATTERN, examples=["aqua-shop"])]
CronText = Annotated[str, Meta(min_length=1, max_length=200, examples=["*/5 * * * *"])]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64, examples=["Europe/Paris"])]
Version = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Overrides = Annotated[list[Override], Meta(max_length=1000)]
Overlap = Literal["skip", "allow"]
Missed = Literal["skip", "run_once"]


class ScheduleCreate(In, frozen=True):
    """A new schedule of ``workflow``: at the times ``cron`` (five fields) names in
    ``timezone`` (an IANA name), start it as ``POST /v1/workflows/{name}/executions``
    would, with ``set`` and ``webhook``. ``workflow_version``: run that version (default:
    the latest at each fire). ``overlap``: ``skip`` a fire while the previous execution is
    still running, or ``allow`` it. ``missed``: fires that passed while no scheduler ran
    are ``skip``ped, or ``run_once`` makes up for them with one execution. ``enabled``
    false: created paused."""

    workflow: WorkflowName
    cron: CronText
    timezone: TimeZone = "UTC"
    workflow_version: Version | None = None
    set: Overrides = []
    webhook: str | None = None
    enabled: bool = True
    overlap: Overlap = "skip"
    missed: Missed = "skip"


class ScheduleUpdate(In, frozen=True):
    """The fields to change; those left out stay. ``workflow_version`` null: the latest
    version from now on; ``webhook`` null: none of its own. ``enabled`` false pauses it
    (no fire until it is resumed); true resumes it from its next time after now."""

    workflow: WorkflowName | UnsetType = UNSET
    cron: CronText | UnsetType = UNSET
    timezone: TimeZone | UnsetType = UNSET
    workflow_version: Version | UnsetType | None = UNSET
    set: Overrides | UnsetType = UNSET
    webhook: str | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    overlap: Overlap | UnsetType = UNSET
    missed: Missed | UnsetType = UNSET


class ScheduleFireOut(Out, frozen=True):
    """One fire: due at ``scheduled_for``, handled at ``at``. ``outcome``: ``started``
    (``execution_id``), ``skipped_overlap`` (the previous execution was still running),
    ``missed`` (``count`` fires passed while no scheduler ran) or ``failed_to_start``
    (``reason`` says why)."""

    scheduled_for: datetime
    at: datetime
    outcome: str
    execution_id: str | None
    reason: str | None
    count: int


class ScheduleOut(Out, frozen=True):
    """A schedule: its settings, when it fires next (null while paused), how its last fire
    went, fires by outcome, and (reading one) its newest fires, newest first."""

    id: str
    workflow: str
    workflow_version: int | None
    cron: str
    timezone: str
    set: list[str]
    webhook: str | None
    enabled: bool
    overlap: str
    missed: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_outcome: str | None
    last_execution_id: str | None
    counts: dict[str, int]
    created_at: datetime
    updated_at: datetime
    history: list[ScheduleFireOut] = []
