"""Semantic validation: rules that need the whole, well-typed workflow to judge.

Runs only on a workflow that passed structural validation, and like it collects every
problem, each with its path (the second round in docs/workflows.md, "Validation"). What is
particular to a node type is the node's own business: each node spec says whether it needs
the browser engine and which marker it emits, and checks itself (``NodeBehaviour`` in
``workflows/spec.py``); this module walks the phases and asks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workflows import checks, paths
from workflows.checks import Findings, NodeSite
from workflows.errors import Problem, did_you_mean
from workflows.spec import NodeSpec, Phase, Workflow


def check_semantics(workflow: Workflow) -> list[Problem]:
    """Every semantic problem of a structurally valid workflow."""
    found = Findings()
    if not workflow.start_urls and workflow.sitemaps is None:
        found.add("start_urls", "required: give start_urls, sitemaps, or both")
    for i, url in enumerate(workflow.start_urls):
        found.add(paths.index("start_urls", i), checks.start_url_error(url))
    scope = workflow.scope
    for i, domain in enumerate(scope.allowed_domains):
        found.add(paths.index("scope.allowed_domains", i), checks.domain_error(domain))
    found.regexes("scope.include", scope.include)
    found.regexes("scope.exclude", scope.exclude)
    if workflow.webhook is not None:
        workflow.webhook.check("webhook", found)
    _check_graph(workflow, found.problems)
    for i, phase in enumerate(workflow.phases):
        _check_phase(workflow, phase, paths.index("phases", i), found)
    return found.problems


def _check_graph(workflow: Workflow, out: list[Problem]) -> None:
    """Phase names unique, every named phase exists, every phase reachable from the start."""
    first_index: dict[str, int] = {}
    for i, phase in enumerate(workflow.phases):
        if phase.name in first_index:
            message = (
                f"duplicate phase name {phase.name!r} (also phases[{first_index[phase.name]}])"
            )
            out.append(Problem(f"phases[{i}].name", message))
        else:
            first_index[phase.name] = i

    def unknown(name: str) -> str:
        known = ", ".join(first_index)
        return f"unknown phase {name!r} (phases: {known})" + did_you_mean(name, first_index)

    start_ok = workflow.start_phase is None or workflow.start_phase in first_index
    if not start_ok:
        out.append(Problem("start_phase", unknown(str(workflow.start_phase))))
    edges: dict[str, set[str]] = {name: set() for name in first_index}
    for i, phase in enumerate(workflow.phases):
        for k, transition in enumerate(phase.transitions):
            if transition.to in first_index:
                edges[phase.name].add(transition.to)
            else:
                out.append(Problem(f"phases[{i}].transitions[{k}].to", unknown(transition.to)))
    if not start_ok:
        return  # every phase would look unreachable; the bad start_phase is the problem
    start = workflow.first_phase
    reached = _reachable(start, edges)
    for name, i in first_index.items():
        if name not in reached:
            message = (
                f"phase {name!r} is unreachable: no transition path from start phase {start!r}"
            )
            out.append(Problem(f"phases[{i}]", message))


def _reachable(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _check_phase(workflow: Workflow, phase: Phase, path: str, found: Findings) -> None:
    emitted: list[str] = []  # markers of the link-emitting nodes seen so far, in order
    for j, node in enumerate(phase.nodes):
        node_path = paths.index(f"{path}.nodes", j)
        if node.needs_browser and workflow.engine_of(phase) == "http":
            found.add(node_path, _needs_browser(node, phase))
        node.check(NodeSite(node_path, phase.name, tuple(emitted), found))
        if node.emits_links and node.link_marker is not None:
            emitted.append(node.link_marker)
    for k, transition in enumerate(phase.transitions):
        when, when_path = transition.when, f"{path}.transitions[{k}].when"
        if when.marker is not None and when.marker not in emitted:
            found.add(
                f"{when_path}.marker",
                f"no node of phase {phase.name!r} emits marker {when.marker!r} "
                + checks.unemitted_marker(when.marker, emitted, "its nodes"),
            )
        if when.url is not None:
            found.regex(f"{when_path}.url", when.url)
        found.depths(when_path, when.min_depth, when.max_depth)


def _needs_browser(node: NodeSpec, phase: Phase) -> str:
    kind = type(node).__struct_config__.tag
    source = "its engine" if phase.engine else "the workflow's engine"
    return f"{kind} nodes need the browser engine; phase {phase.name!r} uses http ({source})"
