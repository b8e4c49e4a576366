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

    ``url`` is canonical; ``parent`` is the URL of the page that linked here; ``trace``
    carries the W3C trace context across processes; ``published_at`` (epoch seconds) when
    it was published. Retries are counted by the queue (``Delivery.delivery_attempt``)."""

    execution_id: _NonEmpty
    url: _NonEmpty
    depth: _NonNegInt
    phase: _NonEmpty
    marker: str | None = None
    parent: str | None = None
    trace: dict[str, str] = {}
    published_at: float = 0.0  # epoch seconds, for the queue-lag metric


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
