"""Node types: every spec in the language has an implementation and answers for itself.

A new node type is a spec in the ``NodeSpec`` union, an implementation and one registry line;
these tests fail when one of them is forgotten, and show that validation asks the nodes
rather than testing their types.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import msgspec
import pytest

from nodes.registry import REGISTRY
from workflows import Problem
from workflows.checks import NodeSite
from workflows.semantics import check_semantics
from workflows.spec import (
    ExtractLinksNode,
    NodeBehaviour,
    NodeSpec,
    Phase,
    Transition,
    When,
    Workflow,
)

SPEC_TYPES = typing.get_args(NodeSpec)
# The members of the protocol: properties, and the check method.
BEHAVIOUR = sorted(name for name in vars(NodeBehaviour) if not name.startswith("_"))


def test_every_node_spec_has_exactly_one_implementation() -> None:
    assert set(REGISTRY) == set(SPEC_TYPES)


def test_implementations_are_coroutine_functions() -> None:
    for spec_type, impl in REGISTRY.items():
        assert inspect.iscoroutinefunction(impl), spec_type
        assert list(inspect.signature(impl).parameters) == ["spec", "page", "ctx"], spec_type


def test_the_protocol_is_what_validation_asks() -> None:
    expected = ["check", "emits_links", "link_marker", "needs_browser", "writes_records"]
    assert expected == BEHAVIOUR


@pytest.mark.parametrize("spec_type", SPEC_TYPES, ids=lambda t: t.__name__)
def test_every_node_spec_answers_for_itself(spec_type: type[Any]) -> None:
    # Defined on the type itself: no shared default can answer for a forgotten node type.
    for name in BEHAVIOUR:
        member = vars(spec_type).get(name)
        assert member is not None, f"{spec_type.__name__} does not define {name}"
        if name == "check":
            assert inspect.signature(member).parameters.keys() == {"self", "site"}
        else:
            assert isinstance(member, property), f"{spec_type.__name__}.{name}"


class Probe(msgspec.Struct, frozen=True, kw_only=True, tag="probe", tag_field="type"):
    """A node type validation has never heard of, answering the protocol."""

    marker: str
    seen: list[NodeSite] = []

    @property
    def emits_links(self) -> bool:
        return True

    @property
    def link_marker(self) -> str | None:
        return self.marker

    @property
    def writes_records(self) -> bool:
        return True

    @property
    def needs_browser(self) -> bool:
        return True

    def check(self, site: NodeSite) -> None:
        self.seen.append(site)
        site.found.add(f"{site.path}.marker", "probe checked")


def test_validation_asks_a_node_type_it_does_not_know() -> None:
    probe = Probe(marker="found", seen=[])
    phase = Phase(
        name="a",
        engine="http",
        nodes=[ExtractLinksNode(marker="first"), typing.cast(Any, probe)],
        transitions=[Transition(when=When(marker="found"), to="a")],
    )
    workflow = Workflow(name="t1", start_urls=["http://example.com/"], phases=[phase])

    assert check_semantics(workflow) == [
        Problem(
            "phases[0].nodes[1]",
            "probe nodes need the browser engine; phase 'a' uses http (its engine)",
        ),
        Problem("phases[0].nodes[1].marker", "probe checked"),
    ]  # and no problem for `when: {marker: found}`: the probe emits it
    [site] = probe.seen
    assert (site.path, site.phase, list(site.emitted)) == ("phases[0].nodes[1]", "a", ["first"])
    assert workflow.has_records(phase)
