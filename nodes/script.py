"""The script node: JavaScript run in the live page (browser engine only).

``emit: value`` stores the result under ``data[as]`` (validation requires ``as`` there),
normalised to plain JSON (dates become strings, NaN null); a result that has no
JSON form is null and a ``script_bad_result`` warning. ``emit: links`` expects a list of URL
strings and emits them as extract_links would (resolved, de-duplicated, ``limit``,
``marker``); a non-list, or non-string items (skipped), count ``script_bad_result``.

A script that throws is a fact about that page, not a reason to lose the record: the
value is null (no links), ``script_error`` is counted, and the chain goes on. A script that
outlives ``timeout_s`` fails the task with ``ScriptTimeout`` (error class
``script_timeout``): its tab is spinning, and a null value would hide that the workflow's
script never finishes there. The engine's ``evaluate`` reports those two as RuntimeError
and TimeoutError (and discards the tab of a timed-out script); any other exception (a
crashed tab is retryable) is the engine's to classify and propagates. ``timeout_s`` is
enforced here as well as handed to ``evaluate``, so an engine that ignores it cannot stall
a worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from nodes.context import NodeContext
from nodes.extract_links import emit_links
from nodes.page import Page
from workflows.spec import ScriptNode

_log = logging.getLogger(__name__)
_FAILED = object()


class ScriptEngineError(RuntimeError):
    """A script node ran on a page without a browser: a workflow or engine-choice bug."""


class ScriptTimeout(Exception):
    """A script node's code ran past its ``timeout_s``: the task fails (not retried)."""

    error_class = "script_timeout"

    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(f"{url}: script did not finish within its timeout_s ({timeout_s:g} s)")
        self.url = url
        self.timeout_s = timeout_s


async def run(spec: ScriptNode, page: Page, ctx: NodeContext) -> None:
    """Run ``spec.code`` in the page and store its value or emit its links."""
    evaluate = page.evaluate
    if evaluate is None:
        raise ScriptEngineError(
            "script nodes need the browser engine; this page was fetched without one "
            "(set engine: browser on the phase)"
        )
    result: Any
    try:
        async with asyncio.timeout(spec.timeout_s):
            result = await evaluate(spec.code, spec.timeout_s)
    except TimeoutError as exc:
        raise ScriptTimeout(page.url, spec.timeout_s) from exc
    except RuntimeError as exc:  # the page's JavaScript threw
        _log.debug("script node failed on %s: %r", page.url, exc)
        ctx.warn("script_error", field=spec.as_)
        result = _FAILED
    if spec.emit == "links":
        if result is not _FAILED:
            _emit_links(result, spec, page, ctx)
        return
    key = spec.as_
    if key is None:  # validation rejects emit: value without `as`
        raise ValueError("a script node with emit: value needs `as`")
    ctx.data[key] = None if result is _FAILED else _json_value(result, ctx, key)


def _json_value(result: Any, ctx: NodeContext, key: str) -> Any:
    """``result`` as plain JSON types, so every sink writes the same record."""
    if result is None or isinstance(result, (str, bool, int)):
        return result  # the common scalars need no round trip
    try:
        return msgspec.json.decode(msgspec.json.encode(result))
    except (TypeError, ValueError, msgspec.EncodeError):
        ctx.warn("script_bad_result", field=key)
        return None


def _emit_links(result: Any, spec: ScriptNode, page: Page, ctx: NodeContext) -> None:
    if not isinstance(result, list):
        ctx.warn("script_bad_result")
        return
    urls = [item for item in result if isinstance(item, str)]
    if len(urls) != len(result):
        ctx.warn("script_bad_result")
    emit_links(urls, page, ctx, spec.marker, spec.limit)
