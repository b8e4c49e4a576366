"""Semantic validation: rules that need the whole, well-typed workflow to judge.

Runs on a workflow that passed structural validation, or on the best-effort view of one
that did not (``workflows/structure.py``), in the same run: ``gaps`` then says where the
view is broken, and a rule that depends on anything broken stays quiet rather than echo a
structural problem. Like structural validation it collects every problem, each with its
path (docs/workflows.md, "Validation"). What is
particular to a node type is the node's own business: each node spec says whether it needs
the browser engine and which marker it emits, and checks itself (``NodeBehaviour`` in
``workflows/spec.py``); this module walks the phases and asks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workflows import checks, paths
from workflows.checks import Findings, NodeSite
from workflows.errors import Problem, did_you_mean
from workflows.gaps import Gaps
from workflows.session_checks import check_sessions
from workflows.sitemap_checks import check_sitemaps
from workflows.spec import NodeSpec, Phase, Workflow


def check_semantics(workflow: Workflow, gaps: Gaps | None = None) -> list[Problem]:
    """Every semantic problem of a workflow; of its sound parts, when ``gaps`` says where
    structural validation found it broken."""
    found = Findings(gaps=gaps or Gaps())
    if not workflow.start_urls and workflow.sitemaps is None:
        message = "required: give start_urls, sitemaps, or both"
        found.add("start_urls", message, depends_on=("start_urls", "sitemaps"))
    for i, url in enumerate(workflow.start_urls):
        found.add(paths.index("start_urls", i), checks.start_url_error(url), depends_on=())
    scope = workflow.scope
    for i, domain in enumerate(scope.allowed_domains):
        where = paths.index("scope.allowed_domains", i)
        found.add(where, checks.domain_error(domain), depends_on=())
    found.regexes("scope.include", scope.include)
    found.regexes("scope.exclude", scope.exclude)
    if workflow.webhook is not None:
        workflow.webhook.check("webhook", found)
    check_sessions(workflow, found)  # fetch.headers, fetch.cookies, login, secrets
    if workflow.proxies is not None:
        workflow.proxies.check("proxies", found)
    check_sitemaps(workflow, found)  # sitemaps.urls, .phase, something to read
    _check_graph(workflow, found)
    for i, phase in enumerate(workflow.phases):
        _check_phase(workflow, phase, paths.index("phases", i), found)
    return found.problems


# What the graph rules read: a broken phase name or `to` could make any phase look unknown
# or unreachable.
_NAMES = ("phases[*].name",)
_EDGES = (*_NAMES, "phases[*].transitions[*].to", "start_phase", "sitemaps.phase")


def _check_graph(workflow: Workflow, found: Findings) -> None:
    """Phase names unique, every named phase exists, every phase reachable from the start."""
    if not workflow.phases:
        return  # only a broken document has none, and says so
    first_index: dict[str, int] = {}
    for i, phase in enumerate(workflow.phases):
        if phase.name in first_index:
            also = found.gaps.original(f"phases[{first_index[phase.name]}]")
            message = f"duplicate phase name {phase.name!r} (also {also})"
            found.add(f"phases[{i}].name", message, depends_on=())
        else:
            first_index[phase.name] = i

    def unknown(name: str) -> str:
        known = ", ".join(first_index)
        return f"unknown phase {name!r} (phases: {known})" + did_you_mean(name, first_index)

    start_ok = workflow.start_phase is None or workflow.start_phase in first_index
    if not start_ok:
        found.add("start_phase", unknown(str(workflow.start_phase)), depends_on=_NAMES)
    edges: dict[str, set[str]] = {name: set() for name in first_index}
    for i, phase in enumerate(workflow.phases):
        for k, transition in enumerate(phase.transitions):
            if transition.to in first_index:
                edges[phase.name].add(transition.to)
            else:
                where = f"phases[{i}].transitions[{k}].to"
                found.add(where, unknown(transition.to), depends_on=_NAMES)
    if not start_ok:
        return  # every phase would look unreachable; the bad start_phase is the problem
    start = workflow.first_phase
    reached = _reachable(start, edges)
    sitemaps = workflow.sitemap_settings  # the pages sitemaps list start in their phase
    if sitemaps is not None and sitemaps.phase in first_index:
        reached |= _reachable(sitemaps.phase, edges)
    for name, i in first_index.items():
        if name not in reached:
            message = (
                f"phase {name!r} is unreachable: no transition path from start phase {start!r}"
            )
            found.add(f"phases[{i}]", message, depends_on=_EDGES)


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
    nodes_path = f"{path}.nodes"
    for j, node in enumerate(phase.nodes):
        node_path = paths.index(nodes_path, j)
        if node.needs_browser and workflow.engine_of(phase) == "http":
            engines = (node_path, f"{path}.engine", "engine")
            found.add(node_path, _needs_browser(node, phase), depends_on=engines)
        known = not found.gaps.touches_before(nodes_path, j)
        node.check(NodeSite(node_path, phase.name, tuple(emitted), found, emitted_known=known))
        if node.emits_links and node.link_marker is not None:
            emitted.append(node.link_marker)
    for k, transition in enumerate(phase.transitions):
        when, when_path = transition.when, f"{path}.transitions[{k}].when"
        if when.marker is not None and when.marker not in emitted:
            # Which markers the phase emits is unknown while one of its nodes is broken.
            found.add(
                f"{when_path}.marker",
                f"no node of phase {phase.name!r} emits marker {when.marker!r} "
                + checks.unemitted_marker(when.marker, emitted, "its nodes"),
                depends_on=(when_path, nodes_path),
            )
        if when.url is not None:
            found.regex(f"{when_path}.url", when.url)
        found.depths(when_path, when.min_depth, when.max_depth)


def _needs_browser(node: NodeSpec, phase: Phase) -> str:
    kind = type(node).__struct_config__.tag
    source = "its engine" if phase.engine else "the workflow's engine"
    return f"{kind} nodes need the browser engine; phase {phase.name!r} uses http ({source})"
