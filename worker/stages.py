"""The typed data a task's stages hand each other, and the stages that are plain functions.

    Plan          what the task will do: phase, engine, request, the host's rate policy
      robots      -> the policy slowed to robots.txt's Crawl-delay (or Filtered)
      politeness  -> a Permit, held while fetching and running the nodes (or HandBack)
      fetch+nodes -> Extraction: status, fetch time, data, links, warnings
      frontier    -> funnel counts of the links admitted
      record      -> Record (None for a phase that writes none)
      result      -> TaskResult, to the sink with the record

worker/process.py runs them in that order, each in its telemetry span.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from backends.fetcher import FetchRequest
from backends.queue import Delivery
from backends.ratelimit import RatePolicy
from backends.state import TaskOutcome, TaskResult, funnel_key
from backends.task import Task
from nodes.context import Link, NodeContext
from nodes.page import Page
from worker.context import ExecutionContext
from worker.records import Record, fetch_time, media_type
from workflows.spec import Phase


@dataclass(frozen=True, slots=True)
class Plan:
    """One task of one execution, resolved: its phase, the engine and request to fetch it
    with, and the rate policy of its host (raised to robots.txt's Crawl-delay, if longer)."""

    ctx: ExecutionContext
    task: Task
    phase: Phase
    engine: str
    request: FetchRequest
    policy: RatePolicy

    @classmethod
    def of(cls, ctx: ExecutionContext, task: Task) -> Plan:
        phase = ctx.phases[task.phase]
        engine = ctx.workflow.engine_of(phase)
        return cls(ctx, task, phase, engine, ctx.request(task.url), ctx.policy)

    def slowed_to(self, policy: RatePolicy) -> Plan:
        return self if policy is self.policy else replace(self, policy=policy)


@dataclass(frozen=True, slots=True)
class Extraction:
    """A page after the phase's nodes: all the later stages need once the page is closed."""

    status: int
    fetched_at: datetime
    data: dict[str, Any]
    links: list[Link]
    warnings: dict[str, int]
    warning_fields: dict[str, int]
    final_url: str | None = None
    content_type: str | None = None

    @classmethod
    def of(cls, page: Page, fetched_at: datetime, nodes: NodeContext) -> Extraction:
        return cls(
            status=page.status,
            final_url=page.url,
            content_type=media_type(page.headers.get("content-type")),
            fetched_at=fetched_at,
            data=nodes.data,
            links=nodes.links,
            warnings=dict(nodes.warnings),
            warning_fields=dict(nodes.warning_fields),
        )


def build_record(plan: Plan, page: Extraction) -> Record | None:
    """The page's record, if its phase writes records (has extract or script nodes)."""
    task = plan.task
    if task.phase not in plan.ctx.record_phases:
        return None
    return Record(
        execution_id=task.execution_id,
        workflow=plan.ctx.workflow.name,
        phase=task.phase,
        url=task.url,
        final_url=page.final_url,
        marker=task.marker,
        parent_url=task.parent,
        depth=task.depth,
        status=page.status,
        content_type=page.content_type,
        fetched_at=fetch_time(page.fetched_at),
        data=page.data,
    )


def succeeded(
    delivery: Delivery, page: Extraction, funnel: Counter[str], record: Record | None
) -> TaskResult:
    """The result of a page that went through every stage, with its funnel counts: the
    frontier's (discovered, in scope, new), then this page fetched and, with a record,
    extracted."""
    task = delivery.task
    funnel[funnel_key("fetched", task.phase, task.marker)] += 1
    if record is not None:
        funnel[funnel_key("extracted", task.phase, task.marker)] += 1
    return task_result(
        delivery,
        "succeeded",
        records=1 if record is not None else 0,
        warnings=page.warnings,
        funnel=dict(funnel),
        warning_fields=page.warning_fields,
    )


def task_result(
    delivery: Delivery,
    outcome: TaskOutcome,
    error_class: str | None = None,
    message: str | None = None,
    *,
    records: int = 0,
    warnings: dict[str, int] | None = None,
    funnel: dict[str, int] | None = None,
    warning_fields: dict[str, int] | None = None,
    attempt: int | None = None,
) -> TaskResult:
    """How ``delivery``'s task ended, for the sink to count (``attempt``: default, the
    delivery's own count)."""
    task = delivery.task
    return TaskResult(
        key=task.url,
        url=task.url,
        phase=task.phase,
        marker=task.marker,
        depth=task.depth,
        attempt=delivery.delivery_attempt if attempt is None else attempt,
        outcome=outcome,
        error_class=error_class,
        error_message=message,
        records=records,
        warnings=warnings or {},
        funnel=funnel or {},
        warning_fields=warning_fields or {},
    )
