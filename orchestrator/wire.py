"""The bodies of the workflow and execution routes, as msgspec Structs, light to import.

They need nothing but msgspec, so the Python client (``trawl.client``) decodes responses
into the API's own types without importing Litestar or the worker; orchestrator/models.py
re-exports them beside the bodies that need more (preview, keys, health). The OpenAPI
schema comes from these Structs, whichever module defines them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

# What a ``set`` override looks like. The OpenAPI document states this pattern
# (orchestrator/openapi.py); the handlers check the same thing with a message a person can
# read (``expected key=value, e.g. max_depth=2 ...``) instead of a regex. A list item is
# ``[index]`` or ``[name]`` (``phases[page].engine=http``).
OVERRIDE_PATTERN = r"^\s*[^.\[\]=\s]+(\.[^.\[\]=\s]+|\[[^\[\]=\s]+\])*\s*="
Override = Annotated[str, Meta(min_length=2, max_length=65_536, examples=["max_pages=100"])]

# An execution in one of these has ended: its counters stop and its export is (or is about
# to be) written.
TERMINAL_STATUSES = frozenset({"completed", "cancelled", "failed"})


class In(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are an error, as everywhere in Trawl."""


class Out(msgspec.Struct, frozen=True, kw_only=True):
    """A response body: a client ignores fields a newer orchestrator adds."""


class WorkflowSummary(Out, frozen=True):
    name: str
    version: int
    created_at: datetime


class WorkflowOut(Out, frozen=True):
    name: str
    version: int
    created_at: datetime
    source: str
    spec: dict[str, Any]


class StartRequest(In, frozen=True):
    """``set``: overrides as ``trawl run --set`` takes them, e.g. ``max_pages=100``.
    ``webhook``: an http(s) URL that gets a signed POST when the execution ends, instead of
    the workflow's ``webhook.url`` (docs/webhooks.md); checked by the handler: a 422 when it
    is not such a URL, the SSRF guard refuses it, or the deployment has no webhook secret.
    ``recrawl_of``: an execution id; a 422 when the tenant has no such execution of this
    workflow, a 409 while it runs or its export is not written yet."""

    set: Annotated[list[Override], Meta(max_length=1000)] = []
    webhook: str | None = None
    # Recrawl this execution (of the same workflow, ended, with its export): its records'
    # pages are asked again with conditional requests (docs/recrawls.md).
    recrawl_of: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class Pages(Out, frozen=True):
    published: int
    finished: int
    succeeded: int
    failed: int
    filtered: int


class ErrorCount(Out, frozen=True):
    error_class: str
    count: int


class FunnelRow(Out, frozen=True):
    """Links and pages of one target phase and marker, stage by stage; in a recrawl also
    the pages found changed or unchanged since the previous execution (docs/recrawls.md)."""

    phase: str
    marker: str | None
    discovered: int = 0
    in_scope: int = 0
    duplicate_marker: int = 0
    new: int = 0
    fetched: int = 0
    extracted: int = 0
    changed: int = 0
    unchanged: int = 0


class ExecutionHealth(Out, frozen=True):
    """``ok``, or ``stalled``: tasks outstanding but none finished since ``since``, with the
    likely ``cause`` (no worker running or pulling, tasks dead-lettered or lost, all waiting
    on politeness)."""

    state: str = "ok"
    since: datetime | None = None
    cause: str | None = None


class SitemapCounts(Out, frozen=True):
    """What the execution's sitemaps gave: files ``read``, seed tasks ``failed`` or
    ``filtered`` by robots.txt, page ``urls`` listed, of them ``queued``, and ``over_limit``
    (past ``max_urls`` or the nesting limit)."""

    read: int = 0
    failed: int = 0
    filtered: int = 0
    urls: int = 0
    queued: int = 0
    over_limit: int = 0


class ExecutionOut(Out, frozen=True):
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
    # The execution this one recrawls, and its pages found changed and unchanged.
    recrawl_of: str | None = None
    changes: dict[str, int] = {}
    # Only for an execution seeded by sitemaps.
    sitemaps: SitemapCounts | None = None


class ExecutionSummary(Out, frozen=True):
    id: str
    workflow: str
    workflow_version: int
    status: str
    created_at: datetime
    finished_at: datetime | None


class OutputOut(Out, frozen=True):
    path: str
    size_bytes: int
    records: int
    kind: str
