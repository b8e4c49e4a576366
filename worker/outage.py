"""Riding out backend outages, and saying so while it lasts.

A backend that fails retryably (GCS unreachable, PgBouncer restarting, a Pub/Sub stream
that ended) is tried again with capped exponential backoff for up to an outage budget
(``TRAWL_BACKEND_OUTAGE_S``, five minutes by default): minutes of outage cost a pause, not
a crash loop. Meanwhile the backend is listed in ``Outages``, which ``/readyz`` reports.
Past the budget the error is final and the stage that met it dies, ending the process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backends.clock import Clock
from backends.errors import RetryableError, TrawlError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OUTAGE_BUDGET_S = 300.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0

# error_class prefixes of the adapters' retryable errors → the backend /readyz names.
_BACKENDS = {
    "gcs": "gcs",
    "database": "postgres",
    "pubsub": "pubsub",
    "redis": "redis",
}


class StageFailed(Exception):
    """A pipeline stage died; the message names the stage and why, in one line."""

    def __init__(self, stage: str, cause: BaseException | str) -> None:
        why = cause if isinstance(cause, str) else describe(cause)
        super().__init__(f"{stage} failed: {why}")
        self.stage = stage


class OutageTooLong(TrawlError):
    """A backend stayed unavailable for longer than the outage budget (final: not retried
    again by an outer loop)."""


class Outages:
    """Backends failing right now, by name, with the last error: what /readyz shows."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}


def backend_of(exc: BaseException) -> str:
    """The backend an adapter's error came from (``backend`` when it does not say)."""
    error_class = str(getattr(exc, "error_class", ""))
    return _BACKENDS.get(error_class.split("_", 1)[0], "backend")


def describe(exc: BaseException) -> str:
    """One line: the message, or the exception's type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# Failures whose message Trawl writes itself, saying what is missing and what to do, with
# no address, credential or library text in it: /readyz (which anyone who reaches the
# port may read) shows these as they are, and every other failure only by its kind.
_PUBLIC_CLASSES = frozenset({"gcs_missing", "pubsub_missing", "database_schema"})


def public_reason(exc: BaseException) -> str:
    """What /readyz says about a failed check: never a library's error text."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, TrawlError) and exc.error_class in _PUBLIC_CLASSES:
        return describe(exc)[:200]
    kind = exc.error_class if isinstance(exc, TrawlError) else type(exc).__name__
    return f"unavailable ({kind})"


async def ride_out(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    clock: Clock,
    budget_s: float,
    outages: Outages | None = None,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """``op()``, tried again after each RetryableError with backoff while the outage lasts
    less than ``budget_s``; then OutageTooLong. Other errors are final at once."""
    started: float | None = None
    backend = "backend"
    delay_s = first_delay_s
    while True:
        try:
            result = await op()
        except RetryableError as exc:
            now = clock.now()
            if started is None:
                started = now
            backend = backend_of(exc)
            if outages is not None:
                outages.current[backend] = public_reason(exc)
            if now - started + delay_s > budget_s:
                if outages is not None:
                    outages.current.pop(backend, None)
                raise OutageTooLong(
                    f"{backend} unavailable for more than {budget_s:g} s ({what}): {describe(exc)}",
                    error_class=exc.error_class,
                ) from exc
            wait_s = max(delay_s, exc.delay_s or 0.0)
            log.warning(
                "%s: %s unavailable, retrying in %.1f s: %s", what, backend, wait_s, describe(exc)
            )
            await clock.sleep(wait_s)
            delay_s = min(delay_s * 2, max_delay_s)
        else:
            if started is not None:
                if outages is not None:
                    outages.current.pop(backend, None)
                log.info("%s: %s available again", what, backend)
            return result
