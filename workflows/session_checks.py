"""Semantic checks of what a crawl sends as itself: ``fetch.headers``, ``fetch.cookies``
and ``login`` (docs/sessions.md).

A header the engines or the SSRF guard own (``Host``, ``Content-Length``, ``Connection``,
``Proxy-*``...) would break a request or smuggle one past the guard, so it is refused
here rather than on the first page; ``Cookie`` is refused too, since cookies come from
``fetch.cookies`` and the login, per host. Names must be HTTP tokens and values cannot hold
line breaks, which would split a header in two. Values that name secrets are checked as
far as they can be now; the resolved values are checked when an execution starts
(``worker/secrets.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from workflows import paths
from workflows.checks import Findings, start_url_error
from workflows.secret_refs import unresolved_refs
from workflows.secrets import SECRET_REF
from workflows.spec import Login, Workflow

# RFC 9110 §5.6.2: a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What the engines set themselves, or what would let a request get around the guard.
_OWNED_HEADERS = {
    "host": "set from the URL",
    "content-length": "set by the engine",
    "transfer-encoding": "set by the engine",
    "connection": "managed by the engine",
    "keep-alive": "managed by the engine",
    "upgrade": "managed by the engine",
    "te": "managed by the engine",
    "trailer": "managed by the engine",
    "expect": "managed by the engine",
    "cookie": "use fetch.cookies (sent to the hosts in scope only) instead",
    "user-agent": "use fetch.user_agent (robots.txt rules are looked up under it) instead",
}
_HEADER_VALUE_BREAKS = ("\r", "\n", "\x00")
# RFC 6265 §4.1.1: no whitespace, DQUOTE, comma, semicolon or backslash in a cookie value.
_COOKIE_VALUE_BAD = re.compile(r'[\s",;\\\x00-\x1f\x7f]')


def check_sessions(workflow: Workflow, found: Findings) -> None:
    """Every problem of the workflow's headers, cookies, login and secret references."""
    check_headers(workflow.fetch.headers, "fetch.headers", found)
    check_cookies(workflow.fetch.cookies, "fetch.cookies", found)
    if workflow.login is not None:
        check_login(workflow.login, "login", found)
    found.problems.extend(unresolved_refs(workflow))


def header_name_error(name: str) -> str | None:
    lowered = name.lower()
    if not _TOKEN.fullmatch(name):
        return f"{name!r} is not a header name (letters, digits and !#$%&'*+.^_`|~-)"
    if lowered in _OWNED_HEADERS:
        return f"{name} cannot be set here: {_OWNED_HEADERS[lowered]}"
    if lowered.startswith("proxy-"):
        return f"{name} cannot be set here: proxy headers belong to the proxies settings"
    return None


def header_value_error(value: str) -> str | None:
    if any(c in value for c in _HEADER_VALUE_BREAKS):
        return "a header value cannot hold a line break or NUL"
    return None


def cookie_value_error(value: str) -> str | None:
    bad = _COOKIE_VALUE_BAD.search(value)
    if bad is not None:
        return f"a cookie value cannot hold {bad.group(0)!r} (no spaces, quotes, , ; or \\)"
    return None


def check_headers(headers: Mapping[str, str], path: str, found: Findings) -> None:
    for name, value in headers.items():
        where = paths.key(path, name)
        found.add(where, header_name_error(name))
        found.add(where, header_value_error(SECRET_REF.sub("", value)))


def check_cookies(cookies: Mapping[str, str], path: str, found: Findings) -> None:
    for name, value in cookies.items():
        where = paths.key(path, name)
        if not _TOKEN.fullmatch(name):
            found.add(where, f"{name!r} is not a cookie name (letters, digits and !#$%&'*+.^_`|~-)")
        found.add(where, cookie_value_error(SECRET_REF.sub("", value)))


def check_login(login: Login, path: str, found: Findings) -> None:
    """An absolute http(s) URL; a form or a script, not both; a selector that parses."""
    found.add(f"{path}.url", start_url_error(login.url))
    if (login.form is None) == (login.script is None):
        found.add(path, "give form (a POST) or script (in the browser): exactly one")
    if login.secrets and login.script is None:
        found.add(
            f"{path}.secrets",
            "only a script gets secrets by name; a form names them in its values as ${secret:NAME}",
        )
    if login.success_selector is not None:
        found.css(f"{path}.success_selector", login.success_selector)
