"""Syntax checks of the small languages a workflow embeds: regexes, CSS, XPath, URLs, hosts;
and ``Findings`` and ``NodeSite``, what semantic checks (``workflows.semantics`` and each
node spec's own ``check``) write their problems to.

Each syntax check returns an error message or None. CSS is checked by lexbor (selectolax)
and XPath by lxml because those are the engines that will run them: a selector one engine
accepts and another rejects must fail here, not on the thousandth page.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from workflows import paths, regex
from workflows.errors import Problem, did_you_mean

_EMPTY_DOCUMENT = LexborHTMLParser("")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a regex Trawl can run (RE2 syntax), if it is not."""
    return regex.error(pattern)


def css_error(selector: str) -> str | None:
    """Why lexbor cannot parse ``selector``, if it cannot."""
    try:
        _EMPTY_DOCUMENT.css(selector)
    except SelectolaxError:
        return f"invalid CSS selector {selector!r}"
    return None


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
    """``allowed_domains`` entries: a hostname, an IP address, or ``*.domain``."""
    problem = f"must be a hostname or *.domain (no scheme, port or path), got {domain!r}"
    host = domain.removeprefix("*.")
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    else:
        return None if host == domain else problem
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return problem
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return problem
    return None


@dataclass(slots=True)
class Findings:
    """The problems found so far, in the order found, and the checks that add to them."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, path: str, message: str | None) -> None:
        """Record a problem at ``path``; a None message (the check passed) records nothing."""
        if message is not None:
            self.problems.append(Problem(path, message))

    def css(self, path: str, selector: str) -> None:
        """``selector`` must be CSS that lexbor parses."""
        self.add(path, css_error(selector))

    def xpath(self, path: str, expression: str) -> None:
        """``expression`` must be XPath that libxml2 compiles."""
        self.add(path, xpath_error(expression))

    def regex(self, path: str, pattern: str) -> None:
        """``pattern`` must be a regex Trawl can run."""
        self.add(path, regex_error(pattern))

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
    ``found``.
    """

    path: str
    phase: str
    emitted: Sequence[str]
    found: Findings

    def unemitted(self, marker: str) -> str:
        """The end of a message about ``marker``, which no node before this one emits."""
        return unemitted_marker(marker, self.emitted, "the nodes before it")
