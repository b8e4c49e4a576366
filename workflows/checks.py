"""Syntax checks of the small languages a workflow embeds: regexes, CSS, XPath, URLs, hosts.

Each returns an error message or None. CSS is checked by lexbor (selectolax) and XPath by
lxml because those are the engines that will run them: a selector one engine accepts and
another rejects must fail here, not on the thousandth page.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from lxml import etree
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from workflows import regex

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
