"""Which implementation runs each node spec.

Spelled out rather than discovered. A new node type is three things: its spec in
``workflows/spec.py`` (a Struct in the ``NodeSpec`` union that answers ``NodeBehaviour``), its
implementation here in ``nodes/``, and one ``_entry`` line below; tests/unit/
test_node_registry.py fails when the union and this table disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nodes import extract, extract_links, filter, script
from nodes.context import NodeContext
from nodes.page import Page
from workflows.spec import ExtractLinksNode, ExtractNode, FilterNode, ScriptNode

# A node reads the page and its spec and writes the context (record fields, links, warnings).
NodeImpl = Callable[[Any, Page, NodeContext], Awaitable[None]]

_S = TypeVar("_S")


def _entry(
    spec_type: type[_S], impl: Callable[[_S, Page, NodeContext], Awaitable[None]]
) -> tuple[type[Any], NodeImpl]:
    """One row of the table; typed so that mypy rejects an implementation of another spec."""
    return spec_type, impl


REGISTRY: dict[type[Any], NodeImpl] = dict(
    [
        _entry(ExtractNode, extract.run),
        _entry(ExtractLinksNode, extract_links.run),
        _entry(FilterNode, filter.run),
        _entry(ScriptNode, script.run),
    ]
)
