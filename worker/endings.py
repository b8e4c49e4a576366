"""How a task ends, in one table: which exception means a hand-back, a retry, a failure
(and under which error class) or a filtered task.

The stages of a task (worker/process.py) do not catch errors: what they raise, or the
``HandBack`` and ``Filtered`` they raise themselves to end a task early, is looked up in
``TABLE`` (first matching row wins) and the processor does what the row says:

- ``hand_back``: the task was not tried (politeness, or one of Trawl's own backends is
  down); it goes back to the queue and keeps all its retries;
- ``retry``: a page error a retry may fix; nacked with backoff until the workflow's
  ``retries.max_attempts``, then recorded as failed with its class;
- ``failed``: recorded as failed with its class at once;
- ``filtered``: counted as filtered, its class being the reason.

The error class ends up in the counters, ``failures_by_class``, failures.jsonl and the API.
A robots.txt that cannot be read is not here: it never ends a task (worker/robots.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from backends.errors import PermanentError, RetryableError
from nodes.script import ScriptEngineError, ScriptTimeout
from worker.outage import backend_of

EndKind = Literal["hand_back", "retry", "failed", "filtered"]


class HandBack(Exception):
    """The task was not tried: back to the queue after ``delay_s`` (not a retry)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"handed back for {delay_s:g} s")
        self.delay_s = delay_s


class Filtered(Exception):
    """The task is not to be crawled; ``error_class`` says why (``robots_txt``,
    ``cancelled``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.error_class = reason


@dataclass(frozen=True, slots=True)
class Ending:
    """What to do with a task that raised: the row of ``TABLE`` applied to the exception."""

    kind: EndKind
    error_class: str | None = None
    message: str | None = None
    # hand_back: when to offer the task again (None: back off, a backend is down);
    # retry: the delay the server asked for (Retry-After), if any.
    delay_s: float | None = None
    unexpected: bool = False  # a bug or a hostile page: logged with its traceback


ErrorClass = Callable[[Exception], str]


def _own(exc: Exception) -> str:
    """The class the exception names itself (``http_404``, ``timeout``, ``robots_txt``)."""
    return str(getattr(exc, "error_class", type(exc).__name__))


def _internal(exc: Exception) -> str:
    return f"internal_{type(exc).__name__}"


def _ours(exc: Exception) -> bool:
    """Raised by one of Trawl's own backends (Redis, Postgres, Pub/Sub, GCS), not the page."""
    return backend_of(exc) != "backend"


@dataclass(frozen=True, slots=True)
class Row:
    catches: type[Exception]
    kind: EndKind
    error_class: ErrorClass | str | None = None  # None: no class (a hand-back)
    when: Callable[[Exception], bool] | None = None
    max_chars: int | None = None  # the message is cut to this many characters
    unexpected: bool = False


TABLE: Final[tuple[Row, ...]] = (
    # exception           ends as          error class       condition, message
    Row(HandBack, "hand_back"),  # politeness: the host's permit is not due soon enough
    Row(Filtered, "filtered", _own),  # robots_txt, cancelled
    Row(RetryableError, "hand_back", when=_ours),  # our backend is down, not the page
    Row(RetryableError, "retry", _own),  # timeout, connection, http_429, http_5xx...
    Row(PermanentError, "failed", _own),  # http_404, not_html, too_large, no_execution...
    Row(ScriptEngineError, "failed", "script_engine"),  # a script node without a browser
    Row(ScriptTimeout, "failed", _own),  # script_timeout
    Row(ValueError, "failed", "node_error", max_chars=500),  # a selector the parser refuses
    Row(Exception, "failed", _internal, max_chars=500, unexpected=True),  # a bug, a hostile page
)


def ending_of(exc: Exception) -> Ending:
    """How a task that raised ``exc`` ends: the first row of ``TABLE`` that matches."""
    for row in TABLE:
        if isinstance(exc, row.catches) and (row.when is None or row.when(exc)):
            return _apply(row, exc)
    raise AssertionError("the last row matches every Exception")  # pragma: no cover


def _apply(row: Row, exc: Exception) -> Ending:
    if row.kind == "hand_back":
        return Ending("hand_back", delay_s=exc.delay_s if isinstance(exc, HandBack) else None)
    error_class = row.error_class if isinstance(row.error_class, str) else None
    if callable(row.error_class):
        error_class = row.error_class(exc)
    message = str(exc) if row.max_chars is None else str(exc)[: row.max_chars]
    delay_s = exc.delay_s if isinstance(exc, RetryableError) else None
    return Ending(row.kind, error_class, message, delay_s, row.unexpected)
