"""Which implementation runs each node spec.

Spelled out rather than discovered: adding a node type means adding it to the
``workflows.spec.NodeSpec`` union and here, and a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nodes import extract, extract_links, filter, script
from nodes.context import NodeContext
from nodes.page import Page
from workflows.spec import ExtractLinksNode, ExtractNode, FilterNode, ScriptNode

# A node reads the page and its spec and writes the context (record fields, links, warnings).
NodeImpl = Callable[[Any, Page, NodeContext], Awaitable[None]]

REGISTRY: dict[type[Any], NodeImpl] = {
    ExtractNode: extract.run,
    ExtractLinksNode: extract_links.run,
    FilterNode: filter.run,
    ScriptNode: script.run,
}
