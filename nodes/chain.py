"""A phase's nodes run in order over one page."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from nodes.context import NodeContext
from nodes.page import Page
from nodes.registry import REGISTRY
from workflows.spec import NodeSpec

# Wraps each node's run, e.g. in a tracing span: (index, node) -> a context manager.
NodeHook = Callable[[int, NodeSpec], contextlib.AbstractContextManager[Any]]


async def run_chain(
    nodes: Sequence[NodeSpec], page: Page, depth: int, around: NodeHook | None = None
) -> NodeContext:
    """The record, links and warnings of ``page`` (at ``depth``) after ``nodes``.

    Order matters: a filter sees only the links emitted before it, and a later field of the
    same name overwrites an earlier one.
    """
    ctx = NodeContext(depth=depth)
    for index, node in enumerate(nodes):
        impl = REGISTRY.get(type(node))
        if impl is None:
            raise TypeError(f"no implementation registered for {type(node).__name__}")
        if around is None:
            await impl(node, page, ctx)
            continue
        with around(index, node):
            await impl(node, page, ctx)
    return ctx
