"""Which sites a crawl may visit: ``scope.allowed_domains``, else the start URLs' origins.

A site is an origin (RFC 6454): scheme, host and port. ``http://shop.test:8080`` and
``http://shop.test:9090`` are two sites, and so are ``http://shop.test`` and
``https://shop.test``, as they are to a browser and to robots.txt (RFC 9309). So the
default scope, taken from the start URLs (and the sitemap URLs), admits exactly their
origins: the same host on another port or scheme is out of scope.

An ``allowed_domains`` entry says how much of that to pin:

    host                  example.com, 127.0.0.1, [::1], bücher.de: the host, any scheme, any port
    *.domain              the domain and every host under it, any scheme, any port
    host:port             the host on that port only, either scheme (*.domain:port too)
    scheme://host[:port]  one origin; the port defaults to the scheme's (80 for http, 443
                          for https); *.domain works here too

Hosts compare in their ASCII (IDNA) form, case-insensitively, without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")
_FORMS = "a host, *.domain, host:port or scheme://host[:port], with no path"


class ScopeEntryError(ValueError):
    """An ``allowed_domains`` entry that is none of the forms above."""


@dataclass(frozen=True, slots=True)
class SiteRule:
    """One entry, parsed: a host (or a domain and its subdomains), and optionally the
    scheme and the port it is pinned to (None: any)."""

    host: str
    subdomains: bool = False
    scheme: str | None = None
    port: int | None = None

    def matches(self, scheme: str, host: str, port: int) -> bool:
        """Whether a URL with this scheme, ASCII host and (effective) port is allowed."""
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None and port != self.port:
            return False
        if host == self.host:
            return True
        return self.subdomains and host.endswith("." + self.host)


def parse_entry(entry: str) -> SiteRule:
    """The rule of one ``allowed_domains`` entry; ScopeEntryError says why it is none."""
    problem = f"must be {_FORMS}, got {entry!r}"
    if not entry or any(c.isspace() for c in entry):
        raise ScopeEntryError(problem)
    scheme: str | None = None
    rest = entry
    if "://" in entry:
        scheme, rest = entry.split("://", 1)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise ScopeEntryError(f"{problem} (the scheme must be http or https)")
        rest = rest.removesuffix("/")  # an origin as browsers print it: http://host:8080/
    if any(c in rest for c in "/?#@"):
        raise ScopeEntryError(problem)
    host, port_text = _split_port(rest, problem)
    port: int | None = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise ScopeEntryError(f"{problem} (a port is a number from 1 to 65535)")
        port = int(port_text)
    elif scheme is not None:
        port = DEFAULT_PORTS[scheme]
    subdomains = host.startswith("*.")
    ascii_host = _ascii_host(host.removeprefix("*."), wildcard=subdomains, problem=problem)
    return SiteRule(ascii_host, subdomains, scheme, port)


def entry_error(entry: str) -> str | None:
    """Why ``entry`` is not a valid ``allowed_domains`` entry, if it is not."""
    try:
        parse_entry(entry)
    except ScopeEntryError as error:
        return str(error)
    return None


def origin_rule(url: str) -> SiteRule | None:
    """The rule that admits exactly ``url``'s origin; None for a URL with none (validation
    keeps those out of start URLs)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    scheme, host = parsed.scheme.lower(), _normal(parsed.raw_host or "")
    if scheme not in SCHEMES or not host:
        return None
    return SiteRule(host, scheme=scheme, port=parsed.port or DEFAULT_PORTS[scheme])


class Sites:
    """A scope's sites: asks ``allows(url)`` of every rule, exact hosts by lookup."""

    def __init__(self, rules: Iterable[SiteRule]) -> None:
        self.rules = tuple(rules)
        self._by_host: dict[str, list[SiteRule]] = {}
        for rule in self.rules:
            if not rule.subdomains:
                self._by_host.setdefault(rule.host, []).append(rule)
        self._wildcards = tuple(r for r in self.rules if r.subdomains)

    @classmethod
    def of(cls, allowed_domains: Iterable[str], seeds: Iterable[str]) -> Sites:
        """The rules of ``allowed_domains`` (valid entries; validation reports the rest),
        or when there are none the origins of ``seeds`` (start and sitemap URLs)."""
        rules: list[SiteRule] = []
        for entry in allowed_domains:
            try:
                rules.append(parse_entry(entry))
            except ScopeEntryError:
                continue
        if not rules:
            rules = [r for r in map(origin_rule, seeds) if r is not None]
        return cls(rules)

    def allows(self, url: str) -> bool:
        """Whether ``url`` (absolute, canonical) is on one of the sites."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            return False
        scheme, host = parsed.scheme, _normal(parsed.raw_host or "")
        port = parsed.port or DEFAULT_PORTS.get(scheme, 0)
        for rule in self._by_host.get(host, ()):
            if rule.matches(scheme, host, port):
                return True
        return any(rule.matches(scheme, host, port) for rule in self._wildcards)


def site_of(url: str) -> str:
    """How a refusal names a URL's site: its host, with the port when it is not the
    scheme's default."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return url
    host = parsed.host or ""
    return f"{host}:{parsed.explicit_port}" if parsed.explicit_port else host


def _split_port(authority: str, problem: str) -> tuple[str, str | None]:
    """``host`` and its port text (None: no port), IPv6 addresses in brackets or bare."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ScopeEntryError(problem)
        after = authority[end + 1 :]
        if after and not after.startswith(":"):
            raise ScopeEntryError(problem)
        return authority[1:end], after[1:] if after else None
    if authority.count(":") == 1:
        host, port = authority.split(":")
        return host, port
    return authority, None  # a name, or a bare IPv6 address (::1)


def _ascii_host(host: str, *, wildcard: bool, problem: str) -> str:
    """``host`` as URLs carry it (IP addresses in their short form, names in IDNA ASCII,
    lower-case, no trailing dot); ScopeEntryError if it is neither."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if wildcard:
            raise ScopeEntryError(f"{problem} (*. goes with a domain name, not an address)")
        return str(address)
    if "*" in host:
        raise ScopeEntryError(f"{problem} (* only as the first label: *.example.com)")
    try:
        ascii_host = _normal(URL.build(scheme="http", host=host).raw_host or "")
    except (ValueError, TypeError, UnicodeError):
        raise ScopeEntryError(problem) from None
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(map(_LABEL.fullmatch, labels)):
        raise ScopeEntryError(problem)
    return ascii_host


def _normal(host: str) -> str:
    return host.lower().rstrip(".")
