"""What a node compiles from its spec is kept while, and only while, that spec object lives."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import msgspec

from nodes import extract
from nodes.compiled import per_spec
from nodes.context import NodeContext
from nodes.page import Page
from workflows.spec import ExtractNode


def spec_of(fields: dict[str, Any]) -> ExtractNode:
    return msgspec.convert({"type": "extract", "fields": fields}, ExtractNode)


class Plan:
    """A compiled value that can be watched for being freed."""

    def __init__(self, names: list[str]) -> None:
        self.names = names


def test_a_spec_is_compiled_once_and_forgotten_with_it() -> None:
    compiled: list[ExtractNode] = []

    def compile_fields(spec: ExtractNode) -> Plan:
        compiled.append(spec)
        return Plan(list(spec.fields))

    plan_of = per_spec(compile_fields)
    spec, twin = spec_of({"a": "h1"}), spec_of({"a": "h1"})
    assert plan_of(spec) is plan_of(spec)
    assert plan_of(twin) is not plan_of(spec)  # equal specs, distinct objects: own plans
    assert len(compiled) == 2 and compiled[0] is spec and compiled[1] is twin
    plan = weakref.ref(plan_of(spec))
    compiled.clear()
    del spec
    gc.collect()
    assert plan() is None  # freed with its spec: nothing accumulates
    assert plan_of(twin).names == ["a"]


def test_a_reused_identity_never_finds_a_freed_specs_plan() -> None:
    # CPython usually hands a freed spec's memory (its id) to the next one; whether it does
    # depends on what else was allocated, so the test does not count on it, only asserts
    # that each spec gets its own plan whatever its id.
    plan_of = per_spec(lambda spec: list(spec.fields))
    for i in range(200):
        spec = spec_of({f"f{i}": "h1"})  # the previous spec is freed here
        assert plan_of(spec) == [f"f{i}"]


async def test_extract_uses_the_plan_of_the_spec_it_is_given() -> None:
    page = Page(url="http://shop.test/", html="<h1>one</h1><h2>two</h2>")
    for _ in range(50):
        for fields, data in (({"x": "h1"}, {"x": "one"}), ({"y": "h2"}, {"y": "two"})):
            ctx = NodeContext(depth=0)
            await extract.run(spec_of(fields), page, ctx)
            assert ctx.data == data
