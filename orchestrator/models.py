"""The bodies the API takes and returns, as msgspec Structs (the OpenAPI schema comes from
them). Unknown fields in a request are an error, as everywhere in Trawl."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from workflows.spec import PhaseName

# What a ``set`` override and a preview URL look like. The OpenAPI document states these
# patterns (orchestrator/openapi.py); the handlers check the same things with messages a
# person can read (``expected key=value, e.g. max_depth=2``) instead of a regex.
OVERRIDE_PATTERN = r"^\s*[^.\[\]=\s]+(\.[^.\[\]=\s]+|\[[0-9]+\])*\s*="
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"
Override = Annotated[str, Meta(min_length=2, max_length=65_536, examples=["max_pages=100"])]
HttpUrl = Annotated[str, Meta(min_length=1, max_length=8192, examples=["https://shop.example/"])]


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class _Out(msgspec.Struct, frozen=True, kw_only=True):
    pass


class WorkflowSummary(_Out, frozen=True):
    name: str
    version: int
    created_at: datetime


class WorkflowOut(_Out, frozen=True):
    name: str
    version: int
    created_at: datetime
    source: str
    spec: dict[str, Any]


class StartRequest(_In, frozen=True):
    """``set``: overrides as ``trawl run --set`` takes them, e.g. ``max_pages=100``."""

    set: Annotated[list[Override], Meta(max_length=1000)] = []


class Pages(_Out, frozen=True):
    published: int
    finished: int
    succeeded: int
    failed: int
    filtered: int


class ErrorCount(_Out, frozen=True):
    error_class: str
    count: int


class FunnelRow(_Out, frozen=True):
    """Links and pages of one target phase and marker, stage by stage."""

    phase: str
    marker: str | None
    discovered: int = 0
    in_scope: int = 0
    new: int = 0
    fetched: int = 0
    extracted: int = 0


class ExecutionHealth(_Out, frozen=True):
    """``ok``, or ``stalled``: tasks outstanding but none finished since ``since``, with the
    likely ``cause`` (no worker running or pulling, tasks dead-lettered or lost, all waiting
    on politeness)."""

    state: str = "ok"
    since: datetime | None = None
    cause: str | None = None


class ExecutionOut(_Out, frozen=True):
    id: str
    workflow: str
    workflow_version: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    overrides: list[str]
    pages: Pages
    records: int
    pages_per_second: float
    by_phase: dict[str, dict[str, int]]
    by_marker: dict[str, dict[str, int]]
    top_errors: list[ErrorCount]
    warnings: dict[str, int]
    funnel: list[FunnelRow]
    health: ExecutionHealth = msgspec.field(default_factory=ExecutionHealth)


class ExecutionSummary(_Out, frozen=True):
    id: str
    workflow: str
    workflow_version: int
    status: str
    created_at: datetime
    finished_at: datetime | None


class OutputOut(_Out, frozen=True):
    path: str
    size_bytes: int
    records: int
    kind: str


class PreviewRequest(_In, frozen=True):
    """``workflow``: the document, as a JSON object or as YAML/JSON text."""

    workflow: dict[str, Any] | Annotated[str, Meta(min_length=1)]
    url: HttpUrl
    phase: PhaseName | None = None
    depth: Annotated[int, Meta(ge=0, le=10_000)] = 0


class PreviewLink(_Out, frozen=True):
    url: str
    marker: str | None
    depth: int
    phase: str | None = None
    dropped: str | None = None


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
