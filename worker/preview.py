"""Preview: one phase of a workflow on one page, nothing enqueued or written.

What ``trawl preview`` prints and ``POST /v1/preview`` returns: the record the phase makes
of the page and each link it found, with the phase that link would go to or why it would be
dropped. The links are judged by ``workflows.claims.claim_links``, exactly as the frontier
judges them in a run: two nodes emitting one URL show as the run treats them
(``link_claims``), the loser dropped as ``duplicate_marker`` with the marker that won.
What a preview cannot know is the seen set: a URL an earlier page of a run claimed is not
crawled again from this one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import PermanentError, TrawlError
from backends.fetcher import Fetcher
from backends.state import Execution
from nodes.chain import run_chain
from nodes.script import ScriptTimeout
from worker.context import ExecutionContext
from worker.stages import needs_live_page
from workflows.claims import DUPLICATE, DUPLICATE_MARKER, Claim, claim_links
from workflows.spec import Workflow


def fetch_error_message(url: str, error: TrawlError) -> str:
    """One line for a page that could not be previewed: the error, which names the URL
    itself when the fetcher put it there (they mostly do), else prefixed with it; then the
    error class."""
    message = str(error)
    if url not in message:
        message = f"{url}: {message}"
    return f"{message} ({error.error_class})"


def phase_only(workflow: Workflow, phase_name: str) -> Workflow:
    """``workflow`` with just that phase: what to open fetchers for (a browser only if this
    phase needs one)."""
    phase = workflow.phase(phase_name)
    return msgspec.structs.replace(workflow, phases=[phase], start_phase=None)


async def preview_page(
    workflow: Workflow,
    url: str,
    phase_name: str,
    depth: int,
    fetchers: Mapping[str, Fetcher],
    *,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """The record and the judged links of ``phase_name`` run on ``url`` (canonical)."""
    phase = workflow.phase(phase_name)
    engine = workflow.engine_of(phase)
    now = (clock or SystemClock()).wall()
    execution = Execution(id="preview", workflow=workflow.name, workflow_version=0, created_at=now)
    ctx = ExecutionContext.build(execution, workflow)
    request = ctx.request(url)
    if needs_live_page(phase):
        request = dataclasses.replace(request, live=True)
    async with fetchers[engine].open(request) as page:
        try:
            node_ctx = await run_chain(phase.nodes, page, depth)
        except ScriptTimeout as exc:  # a failed page, as the crawl records it
            raise PermanentError(str(exc), error_class=exc.error_class) from None
        status = page.status
    links = [_link_entry(claim) for claim in claim_links(ctx.rules, phase_name, node_ctx.links)]
    return {
        "url": url,
        "phase": phase_name,
        "engine": engine,
        "status": status,
        "record": node_ctx.data if workflow.has_records(phase) else None,
        "warnings": dict(node_ctx.warnings),
        "links": links,
    }


def _link_entry(claim: Claim) -> dict[str, Any]:
    """One link as the preview shows it: where it goes, or why it is dropped (and, when
    another marker claimed the URL first on this page, which one: ``claimed_by``)."""
    entry: dict[str, Any] = {"url": claim.url, "marker": claim.marker, "depth": claim.depth}
    if claim.admit is not None:
        entry["phase"] = claim.phase
        return entry
    entry["dropped"] = claim.dropped
    if claim.dropped in (DUPLICATE, DUPLICATE_MARKER):
        entry["phase"] = claim.phase  # where it would have gone
    if claim.dropped == DUPLICATE_MARKER:
        entry["claimed_by"] = claim.claimed_by
    return entry
