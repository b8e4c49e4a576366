"""Cookies as an execution carries them: the ones a login collected, kept with the domain,
path and ``Secure`` flag they were set with, and matched to each URL as a browser would
(RFC 6265 §5.1.3, §5.1.4, §5.4).

The http engine keeps no cookies (its session is shared by every execution of the
process); a login's cookies are stored with the execution (``LoginSession``) and every
fetch gets those that match its URL, plus the workflow's own ``fetch.cookies``, as
``FetchRequest.cookies``. ``Jar`` is what a form login collects them in, hop by hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie

from yarl import URL

from backends.state import SessionCookie

# A login's cookies kept at most (a site setting more is not a login).
MAX_COOKIES = 200


def host_matches(cookie: SessionCookie, host: str) -> bool:
    """``host`` is the cookie's host, or (not host-only) a host under its domain."""
    if host == cookie.domain:
        return True
    return not cookie.host_only and host.endswith("." + cookie.domain)


def path_matches(cookie_path: str, request_path: str) -> bool:
    """RFC 6265 §5.1.4: the same path, or one under it."""
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def matching(cookies: Iterable[SessionCookie], url: str) -> dict[str, str]:
    """Name -> value of the cookies a browser would send to ``url``; of two with one name,
    the one with the longer path (RFC 6265 §5.4: it is listed first, and servers read the
    first)."""
    parsed = URL(url)
    host = (parsed.raw_host or "").lower()
    path = parsed.raw_path or "/"
    https = parsed.scheme == "https"
    chosen: dict[str, SessionCookie] = {}
    for cookie in cookies:
        if cookie.secure and not https:
            continue
        if not host_matches(cookie, host) or not path_matches(cookie.path, path):
            continue
        held = chosen.get(cookie.name)
        if held is None or len(cookie.path) > len(held.path):
            chosen[cookie.name] = cookie
    return {name: cookie.value for name, cookie in chosen.items()}


def cookie_header(cookies: Mapping[str, str]) -> str:
    """The ``Cookie`` header of name -> value pairs."""
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _default_path(path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request's path."""
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Jar:
    """The cookies of one login, as its responses set them (and delete or expire them)."""

    def __init__(self, now: datetime | None = None) -> None:
        self._cookies: dict[tuple[str, str, str], SessionCookie] = {}
        self._now = now or datetime.now(UTC)

    @property
    def cookies(self) -> list[SessionCookie]:
        return list(self._cookies.values())

    def for_url(self, url: str) -> dict[str, str]:
        return matching(self._cookies.values(), url)

    def add(self, cookie: SessionCookie) -> None:
        key = (cookie.domain, cookie.path, cookie.name)
        if key in self._cookies or len(self._cookies) < MAX_COOKIES:
            self._cookies[key] = cookie

    def take(self, set_cookie_headers: Iterable[str], url: str) -> None:
        """Apply the ``Set-Cookie`` headers of a response to ``url``. A cookie for a domain
        that does not cover the response's host is ignored, as a browser ignores it."""
        parsed = URL(url)
        host = (parsed.raw_host or "").lower()
        for header in set_cookie_headers:
            parsed_cookie = SimpleCookie()
            try:
                parsed_cookie.load(header)
            except CookieError:
                continue
            for name, morsel in parsed_cookie.items():
                self._take_one(name, morsel.coded_value, morsel, host, parsed.raw_path or "/")

    def _take_one(
        self, name: str, value: str, attrs: Mapping[str, str], host: str, path: str
    ) -> None:
        domain = attrs.get("domain", "").lower().lstrip(".")
        host_only = not domain
        if host_only:
            domain = host
        elif host != domain and (_is_ip(host) or not host.endswith("." + domain)):
            return  # a domain that does not cover the host: refused
        cookie_path = attrs.get("path") or ""
        cookie = SessionCookie(
            name=name,
            value=value,
            domain=domain,
            path=cookie_path if cookie_path.startswith("/") else _default_path(path),
            host_only=host_only,
            secure=bool(attrs.get("secure")),
        )
        if self._expired(attrs):
            self._cookies.pop((cookie.domain, cookie.path, name), None)
        else:
            self.add(cookie)

    def _expired(self, attrs: Mapping[str, str]) -> bool:
        max_age = attrs.get("max-age")
        if max_age:
            try:
                return int(max_age) <= 0
            except ValueError:
                return False
        expires = attrs.get("expires")
        if expires:
            try:
                when = parsedate_to_datetime(expires)
            except (TypeError, ValueError):
                return False
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when <= self._now
        return False
