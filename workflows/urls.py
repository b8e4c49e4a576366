"""URL canonicalisation: two spellings of one page must become one key.

yarl does the RFC 3986 work (lower-cased scheme and host, IDNA, default port dropped, dot
segments removed, percent-encoding re-quoted to one form); this module adds what a crawler
needs on top: fragments dropped, query parameters sorted, ignored parameters removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import translate
from functools import lru_cache
from urllib.parse import unquote_plus

from yarl import URL


class BadUrl(ValueError):
    """A URL that cannot be crawled: not absolute http(s), no host, unparseable."""


@lru_cache(maxsize=256)
def _ignore_matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # Glob patterns (utm_*), one regex for all of them; names compare case-sensitively.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


def canonicalize(url: str, ignore_query_params: Iterable[str] = ()) -> str:
    """The canonical form of an absolute http(s) URL (the rules: docs/workflows.md)."""
    try:
        parsed = URL(url.strip())
    except (ValueError, TypeError) as exc:
        raise BadUrl(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise BadUrl(f"not an http(s) URL: {url!r}")
    if not parsed.host:
        raise BadUrl(f"URL has no host: {url!r}")
    base = str(parsed.with_query(None).with_fragment(None))
    if parsed.raw_path == "/" and not base.endswith("/"):
        base += "/"  # yarl prints "http://a.com" for an empty path; it is the same page as "/"
    raw_query = parsed.raw_query_string
    if not raw_query:
        return base
    ignore = _ignore_matcher(tuple(ignore_query_params))
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        if ignore is not None and ignore.fullmatch(unquote_plus(name)):
            continue
        pairs.append((name, sep + value))
    if not pairs:
        return base
    pairs.sort()
    # Re-parse so that the query is quoted exactly as yarl quotes it, making this idempotent.
    return str(URL(f"{base}?{'&'.join(n + v for n, v in pairs)}"))


def host_of(url: str) -> str:
    """The lower-cased host of a URL (no port), '' when there is none."""
    try:
        return URL(url).host or ""
    except (ValueError, TypeError):
        return ""


def origin_of(url: str) -> str:
    """A URL's origin (RFC 6454): scheme, host and port, the default port left out
    (``http://example.com``, ``http://127.0.0.1:8765``); '' when it has none. What
    politeness and robots.txt are keyed on: another port or scheme is another site."""
    try:
        return str(URL(url).origin())
    except (ValueError, TypeError):
        return ""
