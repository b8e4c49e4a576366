"""An execution's report: its state and counters, built once from the StateStore's
``Execution`` and ``Progress``, shown three ways.

- ``trawl status [--json]``: ``status_view()`` (trawl/status.py);
- ``summary.json`` beside the export: ``summary_view()`` (worker/export.py);
- ``GET /v1/executions/{id}`` and its events: ``ExecutionOut``, built from the report in
  orchestrator/executions_api.py (the API's own model, for its OpenAPI schema).

Each view names its keys in order below, so adding a field to the report changes no view
until a view asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from backends.state import Execution, ExecutionStatus, Progress, WarningExample
from backends.task import SEED_PHASE

HealthState = Literal["ok", "stalled"]
# The funnel stages a recrawl's report sums as its ``changes``.
CHANGE_STAGES: Final = ("changed", "unchanged")


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``ok``, or ``stalled`` since the last task finished, with its likely cause (decided
    by worker/stall.py)."""

    state: HealthState = "ok"
    since: datetime | None = None
    cause: str | None = None


OK = Health()


class Pages(msgspec.Struct, frozen=True, kw_only=True):
    """Tasks published, finished, and finished by outcome."""

    published: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    filtered: int = 0


class Sitemaps(msgspec.Struct, frozen=True, kw_only=True):
    """What an execution's sitemaps gave (worker/sitemaps.py): sitemap files ``read``, seed
    tasks (sitemaps, robots.txt read for them) ``failed`` or ``filtered`` by robots.txt,
    page ``urls`` listed, of them ``queued`` as tasks, and ``over_limit``: URLs past
    ``max_urls`` and nested sitemaps past the nesting limit."""

    read: int = 0
    failed: int = 0
    filtered: int = 0
    urls: int = 0
    queued: int = 0
    over_limit: int = 0

    @classmethod
    def of(cls, progress: Progress) -> Sitemaps | None:
        """From the counters of the seed tasks' phase; None when there were none."""
        outcomes = progress.by_phase.get(SEED_PHASE)
        if outcomes is None:
            return None
        funnel = progress.funnel.get(f"{SEED_PHASE}|", {})
        return cls(
            read=funnel.get("fetched", 0),
            failed=outcomes.get("failed", 0),
            filtered=outcomes.get("filtered", 0),
            urls=funnel.get("discovered", 0),
            queued=funnel.get("new", 0),
            over_limit=funnel.get("over_limit", 0),
        )


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What is known of one execution at one moment.

    ``records`` counts the records written (in a summary: those the export kept, after
    ``duplicate_records_dropped``). ``by_phase`` and ``by_marker`` map a phase or marker
    (none: "") to outcome to count; ``funnel`` maps "phase|marker" to stage (discovered,
    in_scope, duplicate_marker, new, fetched, extracted; changed, unchanged) to count.
    ``settled``: a cancelled execution's counters are frozen and its export written.
    ``recrawl_of``: the execution a recrawl goes over, and ``changes`` its pages found
    ``changed`` and ``unchanged`` (the funnel's, summed; its other records are ``new``).
    """

    execution_id: str
    workflow: str
    workflow_version: int
    status: ExecutionStatus
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    overrides: list[str] = []
    pages: Pages = Pages()
    records: int = 0
    pages_per_second: float = 0.0
    by_phase: dict[str, dict[str, int]] = {}
    by_marker: dict[str, dict[str, int]] = {}
    failures_by_class: dict[str, int] = {}
    warnings: dict[str, int] = {}
    funnel: dict[str, dict[str, int]] = {}
    health: Health = OK
    settled: bool = True
    duplicate_records_dropped: int = 0
    warning_examples: list[WarningExample] = []
    recrawl_of: str | None = None
    changes: dict[str, int] = {}
    sitemaps: Sitemaps | None = None

    @classmethod
    def of(
        cls,
        execution: Execution,
        progress: Progress,
        *,
        now: datetime | None = None,
        health: Health = OK,
        settled: bool = True,
    ) -> ExecutionReport:
        """The report of ``execution`` with its counters; ``now`` is when a running one's
        pages per second are measured up to (None: 0 until it has finished)."""
        return cls(
            execution_id=execution.id,
            workflow=execution.workflow,
            workflow_version=execution.workflow_version,
            status=execution.status,
            error=execution.error,
            created_at=execution.created_at,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            overrides=[str(s) for s in execution.params.get("set") or []],
            pages=msgspec.convert(progress.pages(), Pages),
            records=progress.records,
            pages_per_second=_rate(execution, progress.finished, now),
            by_phase=progress.by_phase,
            by_marker=progress.by_marker,
            failures_by_class=progress.failures_by_class,
            warnings=progress.warnings,
            funnel=progress.funnel,
            health=health,
            settled=settled,
            **recrawl_view(execution, progress.funnel),
            sitemaps=Sitemaps.of(progress),
        )

    def top_errors(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` commonest error classes with their counts, commonest first."""
        ranked = sorted(self.failures_by_class.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:count]

    def status_view(self) -> dict[str, Any]:
        """What ``trawl status`` prints (as JSON with ``--json``)."""
        return self._view(STATUS_KEYS)

    def summary_view(self) -> dict[str, Any]:
        """The body of summary.json (times to the second)."""
        view = self._view(SUMMARY_KEYS)
        view["started_at"] = _iso(self.started_at)
        view["finished_at"] = _iso(self.finished_at)
        return view

    def _view(self, keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: msgspec.to_builtins(getattr(self, key)) for key in keys}


STATUS_KEYS: Final = (
    "execution_id",
    "workflow",
    "workflow_version",
    "status",
    "error",
    "pages",
    "records",
    "by_phase",
    "by_marker",
    "failures_by_class",
    "warnings",
    "health",
    "settled",
    "recrawl_of",
    "changes",
    "sitemaps",
)
SUMMARY_KEYS: Final = (
    "execution_id",
    "workflow",
    "workflow_version",
    "status",
    "started_at",
    "finished_at",
    "pages",
    "records",
    "duplicate_records_dropped",
    "by_phase",
    "by_marker",
    "failures_by_class",
    "warnings",
    "funnel",
    "warning_examples",
    "recrawl_of",
    "changes",
    "sitemaps",
)


def recrawl_view(execution: Execution, funnel: dict[str, dict[str, int]]) -> dict[str, Any]:
    """``recrawl_of`` and ``changes`` of a recrawl's report (nothing for another execution)."""
    previous = execution.params.get("recrawl_of")  # set by worker/start.py (worker/recrawl.py)
    if not isinstance(previous, str):
        return {}
    changes = dict.fromkeys(CHANGE_STAGES, 0)
    for stages in funnel.values():
        for stage in CHANGE_STAGES:
            changes[stage] += stages.get(stage, 0)
    return {"recrawl_of": previous, "changes": changes}


def changes_line(view: Mapping[str, Any]) -> str | None:
    """What ``trawl run`` and ``trawl status`` print of a recrawl's report view (a status
    view, a summary.json): ``recrawl of ID: 20 unchanged, 1 changed``; None for another
    execution."""
    previous = view.get("recrawl_of")
    if not previous:
        return None
    changes = view.get("changes") or {}
    counts = ", ".join(f"{changes.get(stage, 0)} {stage}" for stage in reversed(CHANGE_STAGES))
    return f"recrawl of {previous}: {counts}"


def sitemaps_line(view: Mapping[str, Any]) -> str | None:
    """What ``trawl run`` and ``trawl status`` print of a report view's sitemaps:
    ``sitemaps: 3 read, 171 URLs, 168 queued`` (failed, filtered and over the limit when
    there are any); None for an execution without sitemaps."""
    counts = view.get("sitemaps")
    if not counts:
        return None
    parts = [f"{counts.get('read', 0)} read"]
    parts += [f"{counts[k]} {k}" for k in ("failed", "filtered") if counts.get(k)]
    parts += [f"{counts.get('urls', 0)} URLs", f"{counts.get('queued', 0)} queued"]
    if counts.get("over_limit"):
        parts.append(f"{counts['over_limit']} over the limit")
    return "sitemaps: " + ", ".join(parts)


def _rate(execution: Execution, finished: int, now: datetime | None) -> float:
    """Pages finished per second since the execution started (until it finished, or
    ``now``)."""
    end = execution.finished_at or now
    if execution.started_at is None or end is None:
        return 0.0
    seconds = (end - execution.started_at).total_seconds()
    return round(finished / seconds, 2) if seconds > 0 else 0.0


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def report_lines(view: Mapping[str, Any]) -> list[str]:
    """The lines ``trawl run`` and ``trawl status`` print under the page counts for what
    only some executions have: a recrawl's changes, the sitemaps read."""
    return [line for line in (changes_line(view), sitemaps_line(view)) if line]
