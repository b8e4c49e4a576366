"""What a response means for the crawl, shared by both engines so they fail alike.

Status codes and content types become RetryableError (try later, perhaps after the server's
Retry-After) or PermanentError (record the failure, move on). ``error_class`` strings are
what counters and summary.json show: ``http_404``, ``http_429``, ``http_5xx``, ``not_html``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from backends.errors import PermanentError, RetryableError, TrawlError

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# Statuses that mean "not now" rather than "never": request timeout, too early, rate limit.
_RETRYABLE_4XX = frozenset({408, 425, 429})

# A Retry-After further away than this is treated as this: a crawl should not park a task
# for a day because one server said so.
MAX_RETRY_AFTER_S = 3600.0

_CONDITIONAL_HEADERS = frozenset({"if-none-match", "if-modified-since"})

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<meta", b"<title")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        delay = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is malformed-but-GMT
            return None
        delay = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def status_error(
    status: int,
    url: str,
    retry_after: str | None = None,
    now: float | None = None,
    *,
    conditional: bool = False,
) -> TrawlError | None:
    """The error a final (post-redirect) status means, or None when the page is usable.
    ``conditional``: the request carried validators (a recrawl's, worker/recrawl.py), so a
    304 is an answer, "not modified", rather than an error."""
    if 200 <= status < 300 or (status == 304 and conditional):
        return None
    if status >= 500:
        return RetryableError(
            f"HTTP {status} from {url}",
            error_class="http_5xx",
            delay_s=parse_retry_after(retry_after, now),
        )
    if status in _RETRYABLE_4XX:
        return RetryableError(
            f"HTTP {status} from {url}",
            error_class=f"http_{status}",
            delay_s=parse_retry_after(retry_after, now),
        )
    # 4xx, and 1xx/3xx that were not followed (304 without a cache, 300, a 3xx without
    # Location): retrying gives the same answer.
    return PermanentError(f"HTTP {status} from {url}", error_class=f"http_{status}")


def is_conditional(headers: Mapping[str, str]) -> bool:
    """Whether request headers make a GET conditional (If-None-Match, If-Modified-Since)."""
    return any(name.lower() in _CONDITIONAL_HEADERS for name in headers)


def media_type(content_type: str | None) -> str:
    """``text/html`` from ``text/HTML; charset=utf-8``; empty when absent."""
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def looks_like_html(head: bytes) -> bool:
    """Whether an undeclared body is HTML, judged by how it starts."""
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n\x0c").lower()
    return start.startswith(_HTML_STARTS) or b"<html" in start


def content_type_error(content_type: str | None, url: str) -> PermanentError | None:
    """A ``not_html`` error for declared non-HTML types; None for HTML or no declaration."""
    kind = media_type(content_type)
    if not kind or kind in HTML_TYPES:
        return None
    return PermanentError(f"{url} is {kind}, not HTML", error_class="not_html")


def not_html(url: str, what: str = "an undeclared non-HTML body") -> PermanentError:
    """The error for a body that turned out not to be HTML."""
    return PermanentError(f"{url} is {what}, not HTML", error_class="not_html")


def too_large(url: str, limit: int) -> PermanentError:
    """The error for a body over ``max_body_bytes``."""
    return PermanentError(f"{url} is larger than {limit} bytes", error_class="too_large")


def redirect_loop(url: str, detail: str = "") -> PermanentError:
    """The error for too many redirects (a loop, or a chain longer than we follow)."""
    return PermanentError(
        f"too many redirects from {url}{': ' + detail if detail else ''}",
        error_class="redirect_loop",
    )


def timeout(url: str, timeout_s: float) -> RetryableError:
    """The error for a fetch that did not finish within its time."""
    return RetryableError(f"{url} timed out after {timeout_s:g} s", error_class="timeout")


def connection(url: str, detail: str) -> RetryableError:
    """The error for a refused, reset or dropped connection (or an unresolved name)."""
    return RetryableError(f"{url}: {detail}", error_class="connection")
