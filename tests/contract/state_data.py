"""Data the StateStore role suites share: executions and task results."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from backends.state import Execution, TaskResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def execution(
    id: str, *, tenant: str = "default", workflow: str = "shop", at: datetime = T0
) -> Execution:
    return Execution(
        id=id,
        workflow=workflow,
        workflow_version=1,
        tenant=tenant,
        created_at=at,
        params={"max_pages": 10},
    )


def result(
    key: str,
    outcome: str = "succeeded",
    *,
    phase: str = "product",
    marker: str | None = "product",
    error_class: str | None = None,
    records: int = 1,
    warnings: dict[str, int] | None = None,
) -> TaskResult:
    return msgspec.convert(
        {
            "key": key,
            "url": key,
            "phase": phase,
            "marker": marker,
            "depth": 1,
            "attempt": 1,
            "outcome": outcome,
            "error_class": error_class,
            "error_message": f"{error_class} happened" if error_class else None,
            "records": records if outcome == "succeeded" else 0,
            "warnings": warnings or {},
        },
        TaskResult,
    )
