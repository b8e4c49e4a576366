"""Preview: one phase of a workflow on one page, nothing enqueued or written.

What ``trawl preview`` prints and ``POST /v1/preview`` returns: the record the phase makes
of the page and each link it found, with the phase that link would go to or why it would be
dropped.
"""

from __future__ import annotations

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
from workflows.rules import Admit, CrawlRules
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
    async with fetchers[engine].open(ctx.request(url)) as page:
        try:
            node_ctx = await run_chain(phase.nodes, page, depth)
        except ScriptTimeout as exc:  # a failed page, as the crawl records it
            raise PermanentError(str(exc), error_class=exc.error_class) from None
        status = page.status
    rules = CrawlRules(workflow)
    links = []
    for link in node_ctx.links:
        decision = rules.judge(phase_name, link.url, link.marker, link.depth)
        entry: dict[str, Any] = {"url": link.url, "marker": link.marker, "depth": link.depth}
        if isinstance(decision, Admit):
            entry["url"] = decision.url
            entry["phase"] = decision.phase
        else:
            entry["dropped"] = str(decision)
        links.append(entry)
    return {
        "url": url,
        "phase": phase_name,
        "engine": engine,
        "status": status,
        "record": node_ctx.data if workflow.has_records(phase) else None,
        "warnings": dict(node_ctx.warnings),
        "links": links,
    }
