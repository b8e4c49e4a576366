"""The registry pairs every node spec of the language with its implementation."""

from __future__ import annotations

import inspect
import typing

from nodes.registry import REGISTRY
from workflows.spec import NodeSpec


def test_every_node_spec_has_exactly_one_implementation() -> None:
    assert set(REGISTRY) == set(typing.get_args(NodeSpec))


def test_implementations_are_coroutine_functions() -> None:
    for spec_type, impl in REGISTRY.items():
        assert inspect.iscoroutinefunction(impl), spec_type
        assert list(inspect.signature(impl).parameters) == ["spec", "page", "ctx"], spec_type
