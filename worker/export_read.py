"""Reading an export back: its lines in chunks, its records, and records flattened for CSV.

``trawl export`` and ``GET /v1/executions/{id}/records`` both stream through these, so a
large export never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from backends.blobs import BlobStore

_decoder = msgspec.json.Decoder()


async def lines(blobs: BlobStore, path: str) -> AsyncIterator[bytes]:
    """The lines of an object, read in chunks."""
    rest = b""
    async for chunk in blobs.iter_chunks(path):
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


async def records(blobs: BlobStore, path: str) -> AsyncIterator[dict[str, Any]]:
    async for line in lines(blobs, path):
        yield _decoder.decode(line)


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted columns (``data.specs.Volume``); lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = msgspec.json.encode(value).decode()
        else:
            flat[name] = value
    return flat
