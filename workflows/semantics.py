"""Semantic validation: rules that need the whole, well-typed workflow to judge.

Runs only on a workflow that passed structural validation, and like it collects every
problem, each with its path (the second round in docs/workflows.md, "Validation").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workflows import checks, paths
from workflows.errors import Problem, did_you_mean
from workflows.spec import (
    ExtractLinksNode,
    ExtractNode,
    FieldSpec,
    FilterNode,
    Phase,
    ScriptNode,
    Workflow,
)


def check_semantics(workflow: Workflow) -> list[Problem]:
    """Every semantic problem of a structurally valid workflow."""
    out: list[Problem] = []
    for i, url in enumerate(workflow.start_urls):
        _add(out, paths.index("start_urls", i), checks.start_url_error(url))
    scope = workflow.scope
    for i, domain in enumerate(scope.allowed_domains):
        _add(out, paths.index("scope.allowed_domains", i), checks.domain_error(domain))
    _check_regexes(scope.include, "scope.include", out)
    _check_regexes(scope.exclude, "scope.exclude", out)
    _check_graph(workflow, out)
    for i, phase in enumerate(workflow.phases):
        _check_phase(workflow, phase, paths.index("phases", i), out)
    return out


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


def _check_phase(workflow: Workflow, phase: Phase, path: str, out: list[Problem]) -> None:
    emitted: list[str] = []  # markers of the link-emitting nodes seen so far, in order
    for j, node in enumerate(phase.nodes):
        node_path = paths.index(f"{path}.nodes", j)
        if isinstance(node, ExtractNode):
            _check_fields(node.fields, f"{node_path}.fields", out)
        elif isinstance(node, ExtractLinksNode):
            _add(out, f"{node_path}.selector", checks.css_error(node.selector))
            if node.marker is not None:
                emitted.append(node.marker)
        elif isinstance(node, FilterNode):
            _check_filter(node, node_path, emitted, out)
        elif isinstance(node, ScriptNode):
            _check_script(workflow, phase, node, node_path, out)
            if node.emit == "links" and node.marker is not None:
                emitted.append(node.marker)
    for k, transition in enumerate(phase.transitions):
        when, when_path = transition.when, f"{path}.transitions[{k}].when"
        if when.marker is not None and when.marker not in emitted:
            out.append(
                Problem(
                    f"{when_path}.marker",
                    f"no node of phase {phase.name!r} emits marker {when.marker!r} "
                    + _emitted_note(emitted, "its nodes")
                    + did_you_mean(when.marker, emitted),
                )
            )
        if when.url is not None:
            _add(out, f"{when_path}.url", checks.regex_error(when.url))
        _check_depths(when.min_depth, when.max_depth, when_path, out)


def _check_filter(node: FilterNode, path: str, emitted: list[str], out: list[Problem]) -> None:
    for i, marker in enumerate(node.markers or ()):
        if marker not in emitted:
            out.append(
                Problem(
                    f"{path}.markers[{i}]",
                    f"no node before this filter emits marker {marker!r} "
                    + _emitted_note(emitted, "the nodes before it")
                    + did_you_mean(marker, emitted),
                )
            )
    _check_regexes(node.include, f"{path}.include", out)
    _check_regexes(node.exclude, f"{path}.exclude", out)
    _check_depths(node.min_depth, node.max_depth, path, out)


def _check_script(
    workflow: Workflow, phase: Phase, node: ScriptNode, path: str, out: list[Problem]
) -> None:
    if workflow.engine_of(phase) == "http":
        source = "its engine" if phase.engine else "the workflow's engine"
        message = f"script nodes need the browser engine; phase {phase.name!r} uses http ({source})"
        out.append(Problem(path, message))
    if node.emit == "value":
        if node.as_ is None:
            out.append(Problem(f"{path}.as", "required when emit is value (the record key)"))
        for name, value in (("marker", node.marker), ("limit", node.limit)):
            if value is not None:
                out.append(Problem(f"{path}.{name}", "only allowed with emit: links"))
    elif node.as_ is not None:
        out.append(Problem(f"{path}.as", "only allowed with emit: value"))


def _check_fields(fields: Mapping[str, FieldSpec], path: str, out: list[Problem]) -> None:
    for name, spec in fields.items():
        field_path = paths.key(path, name)
        if isinstance(spec, str):
            _add(out, field_path, checks.css_error(spec))
            continue
        if spec.css is not None and spec.xpath is not None:
            out.append(Problem(field_path, "css and xpath are mutually exclusive; use one"))
        for key, value, check in (
            ("css", spec.css, checks.css_error),
            ("xpath", spec.xpath, checks.xpath_error),
            ("regex", spec.regex, checks.regex_error),
        ):
            if value is not None:
                _add(out, f"{field_path}.{key}", check(value))
        if spec.as_ == "object":
            if not spec.multiple:
                out.append(Problem(f"{field_path}.as", "as: object needs multiple: true"))
            keys = sorted(spec.fields or ())
            if keys != ["key", "value"]:
                message = "as: object needs fields with exactly the keys key and value"
                out.append(
                    Problem(f"{field_path}.as", f"{message} (got: {', '.join(keys) or 'none'})")
                )
        if spec.fields is not None:
            _check_fields(spec.fields, f"{field_path}.fields", out)


def _check_regexes(patterns: list[str], path: str, out: list[Problem]) -> None:
    for i, pattern in enumerate(patterns):
        _add(out, paths.index(path, i), checks.regex_error(pattern))


def _check_depths(low: int | None, high: int | None, path: str, out: list[Problem]) -> None:
    if low is not None and high is not None and low > high:
        out.append(Problem(path, f"min_depth ({low}) is greater than max_depth ({high})"))


def _emitted_note(emitted: list[str], whose: str) -> str:
    if not emitted:
        return f"({whose} emit no markers)"
    return f"(markers emitted: {', '.join(dict.fromkeys(emitted))})"


def _add(out: list[Problem], path: str, error: str | None) -> None:
    if error is not None:
        out.append(Problem(path, error))
