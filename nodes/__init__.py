"""The node library: what a phase does to a page (extract, extract_links, filter, script)."""

from nodes.chain import run_chain
from nodes.context import Link, NodeContext
from nodes.page import Element, Page
from nodes.registry import REGISTRY, NodeImpl
from nodes.script import ScriptEngineError

__all__ = [
    "REGISTRY",
    "Element",
    "Link",
    "NodeContext",
    "NodeImpl",
    "Page",
    "ScriptEngineError",
    "run_chain",
]
