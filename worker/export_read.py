"""Reading an export back: its lines in chunks, its records (``Record``,
worker/records.py), and records flattened for CSV.

``trawl export`` and ``GET /v1/executions/{id}/records`` both stream through these, so a
large export never sits in memory whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, TextIO

import msgspec

from backends.blobs import BlobStore
from worker.records import RECORD_DECODER, Record


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


async def records(blobs: BlobStore, path: str) -> AsyncIterator[Record]:
    """The records of an export, in its order."""
    async for line in lines(blobs, path):
        yield RECORD_DECODER.decode(line)


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


# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets
# (=HYPERLINK(...) in a scraped title would run on the analyst's machine): such text gets
# a leading apostrophe, which spreadsheets show as text and do not display.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet evaluates."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def columns_of(record: Record) -> dict[str, Any]:
    """One record as CSV columns, in its fields' order: ``data`` flattened, times as text."""
    return flatten(msgspec.to_builtins(record))


def csv_row(record: Record) -> dict[str, Any]:
    """One record as a CSV row: flattened, every text cell made safe."""
    return {key: safe_cell(value) for key, value in columns_of(record).items()}


async def write_export(blobs: BlobStore, path: str, fmt: str, out: TextIO) -> int:
    """The export at ``path`` written to ``out`` as JSONL or CSV; how many records."""
    count = 0
    if fmt == "csv":
        async for text, rows in csv_chunks(blobs, path):
            out.write(text)
            count += rows
        return count
    async for line in lines(blobs, path):
        out.write(line.decode("utf-8") + "\n")
        count += 1
    return count


async def csv_chunks(
    blobs: BlobStore, path: str, chunk_chars: int = 1 << 16
) -> AsyncIterator[tuple[str, int]]:
    """The export as CSV text in pieces, each with how many rows it holds. Two passes over
    the object: the header is every column any record has, in the order they first appear."""
    columns: dict[str, None] = {}
    async for record in records(blobs, path):
        columns.update(dict.fromkeys(columns_of(record)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    rows = 0
    async for record in records(blobs, path):
        writer.writerow(csv_row(record))
        rows += 1
        if buffer.tell() > chunk_chars:
            yield buffer.getvalue(), rows
            buffer.seek(0)
            buffer.truncate()
            rows = 0
    yield buffer.getvalue(), rows
