"""Errors that say what the caller should do with them.

The worker maps them to nack (retryable), record-as-failed (permanent) or reject (invalid
input) in one place; the API maps them to HTTP statuses in one handler.
"""

from __future__ import annotations


class TrawlError(Exception):
    """Base of every error Trawl raises on purpose. ``error_class`` names it in counters."""

    error_class = "error"

    def __init__(self, message: str, *, error_class: str | None = None) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class


class RetryableError(TrawlError):
    """Try again later: timeouts, refused connections, 429, 5xx. ``delay_s`` if the server said."""

    error_class = "retryable"

    def __init__(
        self, message: str, *, error_class: str | None = None, delay_s: float | None = None
    ) -> None:
        super().__init__(message, error_class=error_class)
        self.delay_s = delay_s


class PermanentError(TrawlError):
    """Trying again will not help: 404, not HTML, too large, forbidden by robots.txt."""

    error_class = "permanent"


class InvalidInputError(TrawlError):
    """The caller sent something malformed; say what and where."""

    error_class = "invalid_input"
