"""The task: one URL in one execution, as it travels through the queue.

Encoded as JSON rather than msgpack: a task is a couple of hundred bytes either way, and JSON
can be read as it is in the Pub/Sub console, a dead-letter topic or a log line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from backends.errors import InvalidInputError

_NonEmpty = Annotated[str, Meta(min_length=1)]
_NonNegInt = Annotated[int, Meta(ge=0)]


class Previous(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a recrawl knows of a URL from the previous execution's record (worker/recrawl.py):
    the validators to make the request conditional with, the hash of the content then, and
    the record itself (``status``, ``content_type``, ``parent_url``, ``lastmod``, ``data``)
    to repeat when the page has not changed. ``data`` is None when it was too big to carry
    in a task: the request is then not conditional and the page is extracted again."""

    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    status: int = 200
    content_type: str | None = None
    parent_url: str | None = None
    lastmod: str | None = None
    data: dict[str, Any] | None = None


TaskKind = Literal["page", "sitemap", "robots_sitemaps"]

# The phase of the tasks that are not pages (sitemaps, robots.txt read for its sitemaps): no
# workflow phase can have this name, so their counts stand apart in every report.
SEED_PHASE = "(sitemaps)"


class Task(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    """One URL to crawl in one execution: what a worker receives from the queue.

    ``url`` is canonical; ``parent`` is the URL of the page that linked here; ``trace``
    carries the W3C trace context across processes; ``published_at`` (epoch seconds) when
    it was published. Retries are counted by the queue (``Delivery.delivery_attempt``).

    Fields at their defaults are left out of the message: a plain page task is as small as
    before the later fields (key, previous, kind, lastmod) existed, and a worker of the
    release before them reads it."""

    execution_id: _NonEmpty
    url: _NonEmpty
    depth: _NonNegInt
    phase: _NonEmpty
    marker: str | None = None
    parent: str | None = None
    trace: dict[str, str] = {}
    published_at: float = 0.0  # epoch seconds, for the queue-lag metric
    # The task's key in the seen set, the task ledger and the queue when it is not ``url``:
    # under ``link_claims: every`` one URL is a task per marker (workflows/claims.py claim_key).
    key: str | None = None
    # A recrawl's seed: the previous execution's record of this URL (None: a new URL).
    previous: Previous | None = None
    # What the task is (worker/sitemaps.py): a page to crawl, a sitemap to read, or a
    # robots.txt to read the ``Sitemap:`` lines of. Those two write no record; their
    # ``phase`` is SEED_PHASE and their ``key`` names the kind, so a sitemap URL a page
    # also links to is read as a sitemap all the same.
    kind: TaskKind = "page"
    # A page listed in a sitemap: the ``<lastmod>`` given there, as written.
    lastmod: str | None = None

    @property
    def ledger_key(self) -> str:
        """What the seen set, the task ledger and the queue know this task by."""
        return self.key or self.url


def seed_key(kind: TaskKind, url: str) -> str:
    """The key of a task that is not a page: its kind and URL (a canonical URL has no
    space, so it is never taken for a page's)."""
    return f"{kind} {url}"


class _WireTask(Task, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What ``decode_task`` accepts: a Task, or one published by an older worker that still
    carried ``attempt`` (never read; dropped on decoding)."""

    attempt: _NonNegInt = 0


_TASK_FIELDS = Task.__struct_fields__
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_WireTask)


def encode_task(task: Task) -> bytes:
    """The bytes a queue carries for ``task``."""
    return _encoder.encode(task)


def decode_task(data: bytes) -> Task:
    """The task in ``data``; InvalidInputError if it is not one (a poison message to
    dead-letter, not to retry)."""
    try:
        wire = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInputError(f"not a task: {exc}", error_class="bad_task") from None
    return Task(**{name: getattr(wire, name) for name in _TASK_FIELDS})
