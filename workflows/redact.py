"""URLs as telemetry and logs may show them: no credentials, no secret query values.

A crawled URL can carry ``user:password@`` or a token in its query (``?token=...``,
signed-URL signatures). The records keep the URL as crawled (it is the data); spans, log
lines and error messages get this form. Query values are replaced by ``REDACTED`` for the
parameter names in ``SENSITIVE_PARAMS`` (case-insensitive, ``*`` globs allowed), a list an
operator may replace (TRAWL_REDACT_QUERY_PARAMS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache
from urllib.parse import unquote_plus

SENSITIVE_PARAMS: tuple[str, ...] = (
    "*token*",
    "*secret*",
    "*password*",
    "passwd",
    "pwd",
    "*key",
    "api_key",
    "apikey",
    "auth*",
    "session*",
    "sid",
    "sig",
    "signature",
    "x-amz-*",
    "x-goog-*",
    "code",
    "credential*",
)
MASK = "REDACTED"
_ACTIVE: list[tuple[str, ...]] = [SENSITIVE_PARAMS]


def use_params(names: Iterable[str] | None) -> None:
    """Replace the parameter names this process masks (None or empty: the defaults)."""
    chosen = tuple(n.strip() for n in names or () if n.strip())
    _ACTIVE[0] = chosen or SENSITIVE_PARAMS


# A URL inside free text (a log message, an error): up to whitespace or a closing quote.
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


@lru_cache(maxsize=64)
def _patterns(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in names if n.strip())


def _sensitive(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = unquote_plus(name).lower()
    return any(fnmatchcase(lowered, p) for p in patterns)


def redact_url(url: str, params: Iterable[str] | None = None) -> str:
    """``url`` without userinfo and with sensitive query values masked. Works on the raw
    text, so a URL that does not parse is still cleaned as far as it can be."""
    patterns = _patterns(tuple(_ACTIVE[0] if params is None else params))
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            authority_end = min(authority_end, index)
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        authority = f"{MASK}@" + authority.rsplit("@", 1)[1]
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pieces = []
        for piece in query.split("&"):
            name, eq, value = piece.partition("=")
            pieces.append(
                f"{name}={MASK}" if eq and value and _sensitive(name, patterns) else piece
            )
        tail = f"{path}?{'&'.join(pieces)}{hash_}{fragment}"
    return f"{scheme}://{authority}{tail}"


def redact_text(text: str, params: Iterable[str] | None = None) -> str:
    """``text`` with every http(s) URL in it redacted."""
    if "://" not in text:
        return text
    names = tuple(_ACTIVE[0] if params is None else params)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0), names), text)
