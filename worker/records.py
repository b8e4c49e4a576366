"""The record: what a crawl writes for each page of a phase that has ``extract`` or
``script`` nodes, one JSON object per line of a part file and of the export.

The processor builds it, the sink writes it, the export keeps one per key and the readers
(``trawl export``, ``GET /v1/executions/{id}/records``, CSV) read it back as this type.
Its fields are encoded in the order they are declared here; docs/records.md describes them
for the people who consume exports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One page's record. Its key is (execution_id, url, phase): an export holds one per key.

    ``url`` is canonical (the form the frontier deduplicates), ``marker`` the one of the link
    that led here (None for a start URL or a link without one), ``depth`` the number of links
    from a start URL, ``status`` the HTTP status of the response, ``fetched_at`` when the
    fetch began (UTC, whole seconds) and ``data`` the fields the phase's nodes extracted.
    """

    execution_id: str
    workflow: str
    phase: str
    url: str
    marker: str | None
    depth: int
    status: int
    fetched_at: datetime
    data: dict[str, Any]


class RecordKey(msgspec.Struct, frozen=True):
    """What the export reads of each record in a part file to keep one copy per key (the
    shallowest): decoding only these skips the rest of the line."""

    phase: str
    url: str
    depth: int


def fetch_time(wall: datetime) -> datetime:
    """A record's ``fetched_at`` from a clock reading: UTC, whole seconds, so that it is
    written as ``2026-11-23T09:10:27Z``."""
    return wall.astimezone(UTC).replace(microsecond=0)


RECORD_DECODER = msgspec.json.Decoder(Record)
KEY_DECODER = msgspec.json.Decoder(RecordKey)
