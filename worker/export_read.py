"""Reading an export back: its manifest, its records phase by phase, as JSON lines, CSV or
Parquet, in bounded memory.

``trawl export`` and ``GET /v1/executions/{id}/records`` both stream through these. The
JSON lines and the CSV hold every record as ``Record`` has it (worker/records.py), its
``phase`` put back (the dataset files leave it to their path), phase by phase in the
manifest's order and each phase sorted by URL. Parquet is one phase's dataset: its file
as it is when there is one, else its files' row groups rewritten into one file as they are
read (one file's bytes in memory at a time).
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgspec

from backends.blobs import BlobStore
from backends.errors import InvalidInputError
from worker.export.cells import safe_cell
from worker.export.cpu import on_cpu
from worker.export.manifest import Manifest
from worker.export.schema import RECORD_ORDER, schema_from
from worker.paths import PHASE_KEY, export_prefix, manifest_path
from worker.records import RECORD_DECODER, Record

__all__ = ["safe_cell"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_manifest_decoder = msgspec.json.Decoder(Manifest)

Lines = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class ExportAt:
    """An export in a blob store: its folder (``<execution>/export/``) and its manifest."""

    blobs: BlobStore
    folder: str
    manifest: Manifest

    def path(self, relative: str) -> str:
        """The object name of a file the manifest names."""
        return self.folder + relative


async def open_export(blobs: BlobStore, execution_id: str) -> ExportAt:
    """The execution's export; BlobNotFound while there is none."""
    manifest = _manifest_decoder.decode(await blobs.read(manifest_path(execution_id)))
    return ExportAt(blobs, export_prefix(execution_id), manifest)


def record_phases(manifest: Manifest) -> list[str]:
    """The phases whose records the export describes (those with a schema or files), by
    name: the order of the records (phase, then URL)."""
    return sorted({p.name for p in manifest.phases if p.schema} | {f.phase for f in manifest.files})


def pick_phases(manifest: Manifest, phase: str | None) -> list[str]:
    """The phases to read: all of them, or ``phase`` (InvalidInputError naming the phases
    with records when the execution has no such phase)."""
    phases = record_phases(manifest)
    if phase is None:
        return phases
    if phase not in phases and phase not in {p.name for p in manifest.phases}:
        raise InvalidInputError(
            f"execution {manifest.execution_id} has no phase {phase!r}; "
            f"its phases with records: {', '.join(phases) or 'none'}"
        )
    return [phase]


def parquet_phase(manifest: Manifest, phase: str | None) -> str:
    """The phase a Parquet download is of: ``phase``, or the only phase that has records
    (InvalidInputError naming the candidates when several have, or none can be told)."""
    phases = record_phases(manifest)
    if phase is not None:
        if phase not in phases:
            raise InvalidInputError(
                f"execution {manifest.execution_id} has no records in a phase {phase!r}; "
                f"its phases with records: {', '.join(phases) or 'none'}"
            )
        return phase
    filled = sorted({f.phase for f in manifest.files})
    candidates = filled or phases
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InvalidInputError(f"execution {manifest.execution_id} has no phase with records")
    raise InvalidInputError(
        f"Parquet is one phase's records: name one with phase ({', '.join(candidates)})"
    )


def with_phase(line: bytes, phase: str) -> bytes:
    """A dataset line as the record it was: ``phase`` back in its place."""
    fields = _decoder.decode(line)
    if not isinstance(fields, dict):
        return line
    record: dict[str, Any] = {}
    for name in RECORD_ORDER:
        if name == PHASE_KEY:
            record[name] = phase
        elif name in fields:
            record[name] = fields.pop(name)
    record.update(fields)
    return _encoder.encode(record)


async def gunzipped_lines(blobs: BlobStore, path: str) -> AsyncIterator[bytes]:
    """The lines of a gzipped object, decompressed as it streams."""
    inflate = zlib.decompressobj(31)
    rest = b""
    async for chunk in blobs.iter_chunks(path):
        data = inflate.decompress(chunk)
        while inflate.eof and inflate.unused_data:  # another gzip member follows
            unused = inflate.unused_data
            inflate = zlib.decompressobj(31)
            data += inflate.decompress(unused)
        rest += data
        cut = rest.rfind(b"\n")
        if cut < 0:
            continue
        for line in rest[:cut].split(b"\n"):
            if line.strip():
                yield line
        rest = rest[cut + 1 :]
    rest += inflate.flush()
    for line in rest.split(b"\n"):
        if line.strip():
            yield line


async def record_lines(export: ExportAt, phase: str | None = None) -> AsyncIterator[bytes]:
    """Every record of the export (or of ``phase``) as a JSON line, phase by phase."""
    for name in pick_phases(export.manifest, phase):
        for file in export.manifest.files:
            if file.phase == name and file.format == "jsonl":
                async for line in gunzipped_lines(export.blobs, export.path(file.path)):
                    yield with_phase(line, name)


async def lines(blobs: BlobStore, path: str) -> AsyncIterator[bytes]:
    """The lines of a plain JSON-lines object, read in chunks."""
    rest = b""
    async for chunk in blobs.iter_chunks(path):
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


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


def columns_of(record: Record) -> dict[str, Any]:
    """One record as CSV columns, in its fields' order: ``data`` flattened, times as text."""
    return flatten(msgspec.to_builtins(record))


def csv_row(record: Record) -> dict[str, Any]:
    """One record as a CSV row: flattened, every text cell made safe."""
    return {key: safe_cell(value) for key, value in columns_of(record).items()}


async def csv_chunks(source: Lines, chunk_chars: int = 1 << 16) -> AsyncIterator[tuple[str, int]]:
    """The records ``source()`` yields (JSON lines) as CSV text in pieces, each with how many
    rows it holds. Two passes over the source: the header is every column any record has,
    in the order they first appear."""
    columns: dict[str, None] = {}
    async for line in source():
        columns.update(dict.fromkeys(columns_of(RECORD_DECODER.decode(line))))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    rows = 0
    async for line in source():
        writer.writerow(csv_row(RECORD_DECODER.decode(line)))
        rows += 1
        if buffer.tell() > chunk_chars:
            yield buffer.getvalue(), rows
            buffer.seek(0)
            buffer.truncate()
            rows = 0
    yield buffer.getvalue(), rows


async def parquet_chunks(export: ExportAt, phase: str) -> AsyncIterator[bytes]:
    """One phase's records as one Parquet file, in pieces (``parquet_phase`` names it)."""
    manifest, blobs = export.manifest, export.blobs
    files = [f for f in manifest.files if f.phase == phase and f.format == "parquet"]
    if len(files) == 1:
        async for chunk in blobs.iter_chunks(export.path(files[0].path)):
            yield chunk
        return
    from worker.export.parquet_join import ParquetJoin

    info = next((p for p in manifest.phases if p.name == phase), None)
    join = ParquetJoin(schema_from(phase, info.schema) if info and info.schema else None)
    for file in files:
        data = await blobs.read(export.path(file.path))
        yield await on_cpu(join.add, data)
    yield await on_cpu(join.finish)


async def write_export(
    blobs: BlobStore,
    execution_id: str,
    fmt: str,
    out: BinaryIO,
    phase: str | None = None,
) -> int:
    """The export of ``execution_id`` written to ``out`` as JSONL, CSV or Parquet (of
    ``phase``, or of every phase with records: one for Parquet); how many records.
    BlobNotFound when it has no export."""
    export = await open_export(blobs, execution_id)
    manifest = export.manifest
    if fmt == "parquet":
        chosen = parquet_phase(manifest, phase)
        async for piece in parquet_chunks(export, chosen):
            out.write(piece)
        return sum(f.records for f in manifest.files if f.phase == chosen and f.format == "parquet")
    pick_phases(manifest, phase)  # an unknown phase fails before anything is written

    def source() -> AsyncIterator[bytes]:
        return record_lines(export, phase)

    count = 0
    if fmt == "csv":
        async for text, rows in csv_chunks(source):
            out.write(text.encode("utf-8"))
            count += rows
        return count
    async for line in source():
        out.write(line + b"\n")
        count += 1
    return count
