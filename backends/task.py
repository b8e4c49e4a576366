"""The task: one URL in one execution, as it travels through the queue.

Encoded as JSON rather than msgpack: a task is a couple of hundred bytes either way, and JSON
can be read as it is in the Pub/Sub console, a dead-letter topic or a log line.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from backends.errors import InvalidInputError

_NonEmpty = Annotated[str, Meta(min_length=1)]
_NonNegInt = Annotated[int, Meta(ge=0)]


class Task(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One URL to crawl in one execution: what a worker receives from the queue.

    ``url`` is canonical; ``parent`` is the URL of the page that linked here; ``attempt``
    counts retries the runtime chose to re-publish (not queue redeliveries, which the
    Delivery reports); ``trace`` carries the W3C trace context across processes;
    ``published_at`` (epoch seconds) when it was published."""

    execution_id: _NonEmpty
    url: _NonEmpty
    depth: _NonNegInt
    phase: _NonEmpty
    marker: str | None = None
    parent: str | None = None
    attempt: _NonNegInt = 0
    trace: dict[str, str] = {}
    published_at: float = 0.0  # epoch seconds, for the queue-lag metric


def task_key(task: Task) -> str:
    """The key a task is deduplicated and counted by: one task per canonical URL per
    execution, whatever phase or marker reached it first."""
    return task.url


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Task)


def encode_task(task: Task) -> bytes:
    """The bytes a queue carries for ``task``."""
    return _encoder.encode(task)


def decode_task(data: bytes) -> Task:
    """The task in ``data``; InvalidInputError if it is not one (a poison message to
    dead-letter, not to retry)."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInputError(f"not a task: {exc}", error_class="bad_task") from None
