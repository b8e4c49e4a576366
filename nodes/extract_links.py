"""The extract_links node: the links a page offers the crawl.

An element matching ``selector`` gives its ``attr`` (default ``href``), made absolute the way
a browser would (``<base href>`` honoured), fragment removed; what cannot be fetched
(``javascript:``, ``mailto:``, ``tel:``, ``data:``, any non-http scheme, a bare ``#``) is left
out. Duplicates within the node are dropped keeping document order, then ``limit`` applies
(``0`` emits none; absent means no limit), so "the first 50 links" means 50 distinct ones.
Every link carries the node's ``marker`` and the page's depth + 1. Canonicalisation, scope
and the seen-set are the frontier's business, not this node's.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodes.context import Link, NodeContext
from nodes.page import Page
from workflows.spec import ExtractLinksNode


def emit_links(
    hrefs: Iterable[str | None],
    page: Page,
    ctx: NodeContext,
    marker: str | None,
    limit: int | None,
) -> None:
    """Resolve, de-duplicate and cap ``hrefs``, appending them to ``ctx.links``.

    Shared with script nodes that emit links, so both follow the same rules.
    """
    if limit == 0:
        return
    seen: set[str] = set()
    append = ctx.links.append
    resolve = page.resolve
    depth = ctx.depth + 1
    for href in hrefs:
        if href is None:
            continue
        url = resolve(href)
        if url is None or url in seen:
            continue
        seen.add(url)
        append(Link(url, marker, depth))
        if limit is not None and len(seen) >= limit:
            return


async def run(spec: ExtractLinksNode, page: Page, ctx: NodeContext) -> None:
    """Emit the links ``spec.selector`` points at."""
    try:
        elements = page.css(spec.selector)
    except Exception as exc:
        raise ValueError(f"CSS selector {spec.selector!r} cannot be evaluated: {exc}") from exc
    attr = spec.attr
    # A generator: attributes past the limit are never read.
    emit_links((el.attr(attr) for el in elements), page, ctx, spec.marker, spec.limit)
