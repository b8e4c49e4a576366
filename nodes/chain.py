"""A phase's nodes run in order over one page."""

from __future__ import annotations

from collections.abc import Sequence

from nodes.context import NodeContext
from nodes.page import Page
from nodes.registry import REGISTRY
from workflows.spec import NodeSpec


async def run_chain(nodes: Sequence[NodeSpec], page: Page, depth: int) -> NodeContext:
    """The record, links and warnings of ``page`` (at ``depth``) after ``nodes``.

    Order matters: a filter sees only the links emitted before it, and a later field of the
    same name overwrites an earlier one.
    """
    ctx = NodeContext(depth=depth)
    for node in nodes:
        impl = REGISTRY.get(type(node))
        if impl is None:
            raise TypeError(f"no implementation registered for {type(node).__name__}")
        await impl(node, page, ctx)
    return ctx
