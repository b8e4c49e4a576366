"""The bodies the API takes and returns, as msgspec Structs (the OpenAPI schema comes from
them). Unknown fields in a request are an error, as everywhere in Trawl.

The workflow and execution bodies live in orchestrator/wire.py (msgspec only, so the Python
client imports them without Litestar); this module re-exports them beside the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta

from orchestrator.wire import (
    OVERRIDE_PATTERN,
    ErrorCount,
    ExecutionHealth,
    ExecutionOut,
    ExecutionSummary,
    FunnelRow,
    OutputOut,
    Override,
    Pages,
    SitemapCounts,
    StartRequest,
    WorkflowOut,
    WorkflowSummary,
)
from orchestrator.wire import In as _In
from orchestrator.wire import Out as _Out
from workflows.spec import PhaseName

__all__ = [
    "OVERRIDE_PATTERN",
    "URL_PATTERN",
    "ErrorCount",
    "ExecutionHealth",
    "ExecutionOut",
    "ExecutionSummary",
    "FunnelRow",
    "OutputOut",
    "Override",
    "Pages",
    "SitemapCounts",
    "StartRequest",
    "WorkflowOut",
    "WorkflowSummary",
]

# What a preview URL looks like: the OpenAPI document states this pattern
# (orchestrator/openapi.py); the handler checks it with a message a person can read.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"
HttpUrl = Annotated[str, Meta(min_length=1, max_length=8192, examples=["https://shop.example/"])]


class PreviewRequest(_In, frozen=True):
    """``workflow``: the document, as a JSON object or as YAML/JSON text."""

    workflow: dict[str, Any] | Annotated[str, Meta(min_length=1)]
    url: HttpUrl
    phase: PhaseName | None = None
    depth: Annotated[int, Meta(ge=0, le=10_000)] = 0


class PreviewLink(_Out, frozen=True):
    """A link the page emitted: the phase it goes to, or why it is dropped; for a URL
    another marker claimed first on the page (``dropped: duplicate_marker``), that marker
    in ``claimed_by``."""

    url: str
    marker: str | None
    depth: int
    phase: str | None = None
    dropped: str | None = None
    claimed_by: str | None = None


class PreviewOut(_Out, frozen=True):
    url: str
    phase: str
    engine: str
    status: int
    record: dict[str, Any] | None
    warnings: dict[str, int]
    links: list[PreviewLink]


class Health(_Out, frozen=True):
    status: str


class Readiness(_Out, frozen=True):
    status: str
    checked: list[str]
    down: dict[str, str] = {}


# -- API keys (admin keys only)

TENANT_PATTERN = r"^\S(.*\S)?$"
TenantName = Annotated[str, Meta(min_length=1, max_length=200, pattern=TENANT_PATTERN)]


class KeyCreateRequest(_In, frozen=True):
    """A key for ``tenant``; ``expires_in_days``: its lifetime (none: it never expires);
    ``admin``: whether it may manage keys too."""

    tenant: TenantName
    expires_in_days: Annotated[float, Meta(gt=0, le=36_500)] | None = None
    admin: bool = False


class KeyOut(_Out, frozen=True):
    """A key as listed: its public id (not the key, and not enough to rebuild it)."""

    id: str
    tenant: str
    admin: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(_Out, frozen=True):
    """A new key: ``key`` is shown this once; store it now."""

    key: str
    id: str
    tenant: str
    admin: bool
    created_at: datetime
    expires_at: datetime | None
