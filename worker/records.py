"""The record: what a crawl writes for each page of a phase that has ``extract`` or
``script`` nodes, one JSON object per line of a part file and of the export.

The processor builds it, the sink writes it, the export keeps one per key and the readers
(``trawl export``, ``GET /v1/executions/{id}/records``, CSV) read it back as this type.
Its fields are encoded in the order they are declared here; docs/records.md describes them
for the people who consume exports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

Change = Literal["new", "changed", "unchanged"]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One page's record. Its key is (execution_id, url, phase): an export holds one per key.

    ``url`` is canonical (the form the frontier deduplicates) and ``final_url`` where the
    fetch ended after redirects; ``marker`` the one of the link that led here (None for a
    start URL or a link without one) and ``parent_url`` the page that link was on (None for
    a start URL; of several pages linking here, the one whose link was claimed first);
    ``depth`` the number of links from a start URL, ``status`` the HTTP status of the
    response and ``content_type`` its media type without parameters (``text/html``);
    ``fetched_at`` when the fetch began (UTC, whole seconds) and ``data`` the fields the
    phase's nodes extracted. ``etag`` and ``last_modified`` are the response's validators
    (its headers, as sent), ``content_hash`` the SHA-256 of the page's HTML as the nodes
    read it, and ``change`` what a recrawl found (worker/recrawl.py): ``new`` (no record of
    the URL in the previous execution; every record of a first execution), ``changed`` or
    ``unchanged`` (then ``data`` is the previous record's, not extracted again).
    """

    execution_id: str
    workflow: str
    phase: str
    url: str
    final_url: str | None = None
    marker: str | None
    parent_url: str | None = None
    depth: int
    status: int
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    change: Change = "new"
    # A page listed in a sitemap: that entry's ``<lastmod>``, as written (worker/sitemaps.py).
    lastmod: str | None = None
    fetched_at: datetime
    data: dict[str, Any]


class RecordKey(msgspec.Struct, frozen=True):
    """What the export reads of each record in a part file to keep one copy per key (the
    shallowest): decoding only these skips the rest of the line."""

    phase: str
    url: str
    depth: int


def media_type(content_type: str | None) -> str | None:
    """``text/html; charset=utf-8`` as ``text/html``; None when there was no header."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def fetch_time(wall: datetime) -> datetime:
    """A record's ``fetched_at`` from a clock reading: UTC, whole seconds, so that it is
    written as ``2026-11-23T09:10:27Z``."""
    return wall.astimezone(UTC).replace(microsecond=0)


RECORD_DECODER = msgspec.json.Decoder(Record)
KEY_DECODER = msgspec.json.Decoder(RecordKey)
