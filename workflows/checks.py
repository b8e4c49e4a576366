"""Syntax checks of the small languages a workflow embeds: regexes, CSS, XPath, URLs, hosts;
and ``Findings`` and ``NodeSite``, what semantic checks (``workflows.semantics`` and each
node spec's own ``check``) write their problems to.

Each syntax check returns an error message or None. CSS is checked by lexbor (selectolax)
and XPath by lxml because those are the engines that will run them: a selector one engine
accepts and another rejects must fail here, not on the thousandth page
(``workflows/css_errors.py`` says why, and where, a selector fails).

When the document has structural problems, semantic checks run on its best-effort view
(``workflows/structure.py``); ``Findings`` then translates the view's paths to the
document's and leaves out what could only echo a structural problem (``workflows/gaps.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree

from workflows import css_errors, paths, regex, scope
from workflows.errors import Problem, did_you_mean
from workflows.gaps import Gaps


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a regex Trawl can run (RE2 syntax), if it is not."""
    return regex.error(pattern)


def css_error(selector: str) -> str | None:
    """Why lexbor cannot parse ``selector``, and where, if it cannot."""
    return css_errors.css_error(selector)


def xpath_error(expression: str) -> str | None:
    """Why libxml2 cannot compile ``expression``, if it cannot."""
    try:
        etree.XPath(expression)
    except etree.XPathSyntaxError as error:
        return f"invalid XPath {expression!r}: {error}"
    return None


def start_url_error(url: str) -> str | None:
    """Start URLs are fetched as given, so they must be absolute http(s) URLs with a host."""
    problem = f"must be an absolute http(s) URL, got {url!r}"
    if url != url.strip() or any(c.isspace() for c in url):
        return f"must not contain whitespace, got {url!r}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as error:
        return f"{problem} ({error})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return problem
    return None


def domain_error(domain: str) -> str | None:
    """``allowed_domains`` entries: a host, ``*.domain``, ``host:port`` or an origin
    (the forms and how each matches: workflows/scope.py)."""
    return scope.entry_error(domain)


@dataclass(slots=True)
class Findings:
    """The problems found so far, in the order found, and the checks that add to them.

    ``gaps`` are the holes structural validation left in the document (none for a
    ``Workflow`` built in code); paths given to ``add`` are the view's, problems carry the
    document's.
    """

    problems: list[Problem] = field(default_factory=list)
    gaps: Gaps = field(default_factory=Gaps)

    def add(
        self, path: str, message: str | None, *, depends_on: Iterable[str] | None = None
    ) -> None:
        """Record a problem at ``path``; a None message (the check passed) records nothing.

        A rule's verdict depends on more than the value at ``path``: by default on the
        innermost struct around it (the node, field or transition it judges), or on the
        paths ``depends_on`` names (``[*]`` for any index; ``()``: the value alone). The
        problem is left out when a structural problem broke any of it, since it could be
        an echo of that one.
        """
        if message is not None and not self.gaps.hides(path, depends_on):
            self.problems.append(Problem(self.gaps.original(path), message))

    def css(self, path: str, selector: str) -> None:
        """``selector`` must be CSS that lexbor parses."""
        self.add(path, css_error(selector), depends_on=())

    def xpath(self, path: str, expression: str) -> None:
        """``expression`` must be XPath that libxml2 compiles."""
        self.add(path, xpath_error(expression), depends_on=())

    def regex(self, path: str, pattern: str) -> None:
        """``pattern`` must be a regex Trawl can run."""
        self.add(path, regex_error(pattern), depends_on=())

    def regexes(self, path: str, patterns: Iterable[str]) -> None:
        """Every pattern of the list at ``path`` must be a regex Trawl can run."""
        for i, pattern in enumerate(patterns):
            self.regex(paths.index(path, i), pattern)

    def depths(self, path: str, low: int | None, high: int | None) -> None:
        """A ``min_depth``/``max_depth`` pair, when both are given, must not be inverted."""
        if low is not None and high is not None and low > high:
            self.add(path, f"min_depth ({low}) is greater than max_depth ({high})")


def unemitted_marker(marker: str, emitted: Sequence[str], whose: str) -> str:
    """The end of a "no node ... emits marker" message: the markers ``whose`` nodes do
    emit, and the closest of them."""
    if emitted:
        note = f"(markers emitted: {', '.join(dict.fromkeys(emitted))})"
    else:
        note = f"({whose} emit no markers)"
    return note + did_you_mean(marker, emitted)


@dataclass(frozen=True, slots=True)
class NodeSite:
    """Where a node stands, as its own semantic checks (``check`` on each node spec) see it.

    ``path`` is the node's (``phases[1].nodes[0]``), ``phase`` its phase's name, ``emitted``
    the markers of the link-emitting nodes before it in the phase, in order; problems go to
    ``found``. Ask ``may_emit`` rather than ``emitted`` whether a marker is emitted before
    the node: it is also true when a broken node before it may emit it.
    """

    path: str
    phase: str
    emitted: Sequence[str]
    found: Findings
    # False when a node before it had a structural problem: what it emits is unknown.
    emitted_known: bool = True

    def may_emit(self, marker: str) -> bool:
        """Whether a node before this one emits ``marker``, or might (``emitted_known``)."""
        return marker in self.emitted or not self.emitted_known

    def unemitted(self, marker: str) -> str:
        """The end of a message about ``marker``, which no node before this one emits."""
        return unemitted_marker(marker, self.emitted, "the nodes before it")
