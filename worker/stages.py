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
from backends.task import Previous, Task
from nodes.context import Link, NodeContext
from nodes.extract import MISSING_REQUIRED
from nodes.page import Page
from worker.context import ExecutionContext
from worker.proxies import ProxyRoute
from worker.records import Change, Record, fetch_time, media_type
from worker.recrawl import Comparison, conditional
from workflows.spec import Phase

# The warning of a page whose record was left out for a missing required field.
RECORD_DROPPED = "record_dropped"


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
    # The proxy the request goes through (worker/proxies.py); None: straight to the site.
    route: ProxyRoute | None = None

    @classmethod
    def of(cls, ctx: ExecutionContext, task: Task) -> Plan:
        phase = ctx.phases[task.phase]
        engine = ctx.workflow.engine_of(phase)
        request = conditional(ctx.request(task.url), task.previous, engine)
        if needs_live_page(phase):
            request = replace(request, live=True)
        return cls(ctx, task, phase, engine, request, ctx.policy)

    def slowed_to(self, policy: RatePolicy) -> Plan:
        return self if policy is self.policy else replace(self, policy=policy)

    def through(self, route: ProxyRoute | None) -> Plan:
        """The plan with its request going through ``route``'s proxy (None: as it is)."""
        if route is None:
            return self
        return replace(self, request=route.request(self.request), route=route)


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
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    change: Change = "new"
    # False when the page was unchanged and ``data`` is the previous record's (no nodes ran).
    extracted: bool = True

    @classmethod
    def of(
        cls, page: Page, fetched_at: datetime, nodes: NodeContext, compared: Comparison
    ) -> Extraction:
        return cls(
            status=page.status,
            final_url=page.url,
            content_type=media_type(page.headers.get("content-type")),
            etag=page.headers.get("etag"),
            last_modified=page.headers.get("last-modified"),
            content_hash=compared.content_hash,
            change=compared.change,
            fetched_at=fetched_at,
            data=nodes.data,
            links=nodes.links,
            warnings=dict(nodes.warnings),
            warning_fields=dict(nodes.warning_fields),
        )

    @classmethod
    def repeated(
        cls, page: Page, fetched_at: datetime, compared: Comparison, previous: Previous
    ) -> Extraction:
        """An unchanged page: the previous record's data, no links. A 304 has no body of its
        own: the previous status, media type and (unless it sent new ones) validators hold."""
        not_modified = page.status == 304
        headers = page.headers
        return cls(
            status=previous.status if not_modified else page.status,
            final_url=page.url,
            content_type=(
                previous.content_type if not_modified else media_type(headers.get("content-type"))
            ),
            etag=headers.get("etag") or (previous.etag if not_modified else None),
            last_modified=headers.get("last-modified")
            or (previous.last_modified if not_modified else None),
            content_hash=compared.content_hash,
            change="unchanged",
            fetched_at=fetched_at,
            data=dict(previous.data or {}),
            links=[],
            warnings={},
            warning_fields={},
            extracted=False,
        )


def needs_live_page(phase: Phase) -> bool:
    """Whether the phase's nodes need the page's live tab (script nodes), which a stored
    copy of the page cannot give them."""
    return any(node.needs_browser for node in phase.nodes)


def build_record(plan: Plan, page: Extraction) -> Record | None:
    """The page's record, if its phase writes records (has extract or script nodes) and,
    under ``records.missing_required: drop``, none of its required fields is missing (a
    record left out is counted on the page: see ``count_drop``)."""
    task = plan.task
    if task.phase not in plan.ctx.record_phases:
        return None
    if page.warnings.get(MISSING_REQUIRED) and plan.ctx.workflow.records.missing_required == "drop":
        count_drop(page)
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
        etag=page.etag,
        last_modified=page.last_modified,
        content_hash=page.content_hash,
        change=page.change,
        lastmod=task.lastmod,
        fetched_at=fetch_time(page.fetched_at),
        data=page.data,
    )


def count_drop(page: Extraction) -> None:
    """Count the page's record as left out for missing required fields: a
    ``record_dropped`` warning, naming each field that was missing, so the run's warnings
    list the drops with example URLs beside the ``missing_required`` ones. The page itself
    still counts as fetched (and not extracted) in the funnel."""
    page.warnings[RECORD_DROPPED] = page.warnings.get(RECORD_DROPPED, 0) + 1
    for key in list(page.warning_fields):
        kind, _, field = key.partition("|")
        if kind == MISSING_REQUIRED:
            page.warning_fields[f"{RECORD_DROPPED}|{field}"] = 1


def succeeded(
    delivery: Delivery, page: Extraction, funnel: Counter[str], record: Record | None
) -> TaskResult:
    """The result of a page that went through every stage, with its funnel counts: the
    frontier's (discovered, in scope, new), then this page fetched, with a record extracted
    (unless it repeats the previous one), and in a recrawl changed or unchanged."""
    task = delivery.task
    funnel[funnel_key("fetched", task.phase, task.marker)] += 1
    if record is not None and page.extracted:
        funnel[funnel_key("extracted", task.phase, task.marker)] += 1
    if task.previous is not None:
        funnel[funnel_key(page.change, task.phase, task.marker)] += 1
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
        key=task.ledger_key,
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
