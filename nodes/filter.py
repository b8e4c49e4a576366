"""The filter node: drops links emitted earlier in the chain.

A link is kept when all the given conditions hold: its marker is one of ``markers`` (a link
without a marker fails this when ``markers`` is given), ``min_depth <= depth <= max_depth``,
its URL matches one of ``include`` (when non-empty) and none of ``exclude`` (RE2 syntax, searched,
so patterns match anywhere unless anchored). Links emitted after the filter are untouched.
"""

from __future__ import annotations

from functools import lru_cache

from nodes.context import NodeContext
from nodes.page import Page
from workflows import regex
from workflows.spec import FilterNode


@lru_cache(maxsize=1024)
def _compile(patterns: tuple[str, ...]) -> tuple[regex.Pattern, ...]:
    """Compiled once per pattern list, not once per page."""
    try:
        return tuple(regex.compile_pattern(p) for p in patterns)
    except regex.RegexError as exc:
        raise ValueError(f"filter: bad regex in {list(patterns)!r}: {exc}") from exc


async def run(spec: FilterNode, page: Page, ctx: NodeContext) -> None:
    """Keep only the links emitted so far that pass every condition of ``spec``."""
    links = ctx.links
    if not links:
        return
    markers = spec.markers
    low = spec.min_depth
    high = spec.max_depth
    include = _compile(tuple(spec.include)) if spec.include else ()
    exclude = _compile(tuple(spec.exclude)) if spec.exclude else ()
    links[:] = [
        link
        for link in links
        if (markers is None or link.marker in markers)
        and (low is None or link.depth >= low)
        and (high is None or link.depth <= high)
        and (not include or any(p.search(link.url) for p in include))
        and not any(p.search(link.url) for p in exclude)
    ]
