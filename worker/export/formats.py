"""The files of one phase's dataset, written side by side and rolled together.

Each kept record goes to every format at once: a line of gzipped JSON (``part-NNNNN.jsonl.gz``),
a row of Parquet (``part-NNNNN.parquet``, zstd, typed by the phase's schema) and, when asked,
a row of gzipped CSV (``part-NNNNN.csv.gz``). When the JSON lines of the current file reach
``file_bytes`` (uncompressed), all of them are finished and the next index begins, so file N
of every format holds the same records.

In every file the record is the one the sink wrote without its ``phase`` (the partition
key, in the path: BigQuery refuses a file column of that name), with each list or map the
schema knows of as ``[]`` or ``{}`` rather than null. The Parquet columns are the envelope's
then ``data`` as a struct of the schema's fields (``json`` ones as JSON text, Parquet's JSON
logical type); a value that does not have its column's type is null there (counted in the
manifest as ``values_nulled``) and kept as it is in the JSON lines.

Everything here is synchronous and CPU-bound; the builder runs it in a thread, a batch of
records at a time. A finished file is bytes in memory until the builder uploads it: its size
is bounded by ``file_bytes`` (compressed, a fraction of it).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from worker.export.cells import safe_cell
from worker.export.schema import (
    ColumnType,
    Json,
    ListOf,
    MapOf,
    PhaseSchema,
    Scalar,
    StructOf,
    conform,
    fill_empty,
    needs_filling,
    walk_json,
)
from worker.paths import PHASE_KEY, DatasetFormat, dataset_file

# gzip level of the JSON lines and CSV: 6 (zlib's default) halves the speed for a few per
# cent of size.
GZIP_LEVEL: Final = 3
PARQUET_COMPRESSION: Final = "zstd"
_ARROW_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class FinishedFile:
    """One dataset file, ready to upload: its path under the export folder and its bytes."""

    relative: str
    format: DatasetFormat
    phase: str
    data: bytes
    records: int
    sha256: str


def arrow_type(kind: ColumnType, *, plain: bool = False) -> Any:
    """The Arrow type of a column. ``plain``: what Python values convert to directly (JSON
    and timestamps as text), cast to the real type afterwards."""
    if isinstance(kind, Json):
        return pa.string() if plain else pa.json_(pa.string())
    if isinstance(kind, Scalar):
        if kind.name == "timestamp":
            return pa.string() if plain else pa.timestamp("s", tz="UTC")
        return _SCALARS[kind.name]
    if isinstance(kind, ListOf):
        return pa.list_(arrow_type(kind.item, plain=plain))
    if isinstance(kind, MapOf):
        return pa.map_(pa.string(), arrow_type(kind.value, plain=plain))
    return pa.struct([pa.field(n, arrow_type(t, plain=plain)) for n, t in kind.fields])


_SCALARS: Final = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


def arrow_schema(schema: PhaseSchema, *, plain: bool = False) -> Any:
    return pa.schema([pa.field(n, arrow_type(t, plain=plain)) for n, t in schema.columns()])


def _has_json(kind: ColumnType) -> bool:
    return any(isinstance(t, Json) for t in walk_json(kind))


def json_text(kind: ColumnType, value: Any) -> Any:
    """``value`` with every part of type ``json`` as its JSON text (what Parquet stores)."""
    if value is None:
        return None
    if isinstance(kind, Json):
        return _encoder.encode(value).decode()
    if isinstance(kind, ListOf) and isinstance(value, list):
        return [json_text(kind.item, v) for v in value]
    if isinstance(kind, MapOf) and isinstance(value, dict):
        return {k: json_text(kind.value, v) for k, v in value.items()}
    if isinstance(kind, StructOf) and isinstance(value, dict):
        return {n: json_text(t, value.get(n)) for n, t in kind.fields}
    return value


class _Gzipped:
    """Bytes gzipped into memory; deterministic (no time or name in the header)."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._gzip = gzip.GzipFile(
            fileobj=self._buffer, mode="wb", compresslevel=GZIP_LEVEL, mtime=0
        )

    def write(self, data: bytes) -> None:
        self._gzip.write(data)

    def finish(self) -> bytes:
        self._gzip.close()
        return self._buffer.getvalue()


class _ParquetFile:
    """Rows converted to Arrow a small batch at a time (Python objects weigh several times
    their JSON; Arrow about as much), written as row groups of about ``row_group_bytes`` of
    JSON."""

    BATCH_ROWS = 512

    def __init__(self, schema: PhaseSchema, row_group_bytes: int) -> None:
        self._columns = schema.columns()
        self._plain = arrow_schema(schema, plain=True)
        self._final = arrow_schema(schema)
        self._sink = pa.BufferOutputStream()
        self._writer = pq.ParquetWriter(self._sink, self._final, compression=PARQUET_COMPRESSION)
        self._row_group_bytes = row_group_bytes
        self._rows: list[dict[str, Any]] = []
        self._tables: list[Any] = []
        self._bytes = 0
        self.nulled = 0

    def add(self, row: dict[str, Any], size: int) -> None:
        self._rows.append(row)
        self._bytes += size
        if len(self._rows) >= self.BATCH_ROWS:
            self._convert()
        if self._bytes >= self._row_group_bytes:
            self._write_group()

    def finish(self) -> bytes:
        self._write_group()
        self._writer.close()
        data: bytes = self._sink.getvalue().to_pybytes()
        self._sink = None
        pa.default_memory_pool().release_unused()
        return data

    def _convert(self) -> None:
        if self._rows:
            self._tables.append(self._table(self._rows))
            self._rows = []

    def _write_group(self) -> None:
        self._convert()
        if not self._tables:
            return
        group = pa.concat_tables(self._tables)
        self._writer.write_table(group, row_group_size=group.num_rows)
        self._tables = []
        self._bytes = 0
        del group
        pa.default_memory_pool().release_unused()  # else the allocator keeps what was freed

    def _table(self, rows: list[dict[str, Any]]) -> Any:
        try:
            return pa.Table.from_pylist(rows, schema=self._plain).cast(self._final)
        except _ARROW_ERRORS:
            # Some value does not have its column's type: null it, row by row.
            bad = [0]
            fixed = [{n: conform(t, row.get(n), bad) for n, t in self._columns} for row in rows]
            self.nulled += bad[0]
            return pa.Table.from_pylist(fixed, schema=self._plain).cast(self._final)


class _CsvFile:
    """One row per record: the envelope's columns, then ``data.<field>`` per field of the
    schema (``data`` when it is JSON); lists, maps and structs as JSON text, text a
    spreadsheet would run as a formula with a leading apostrophe (as ``trawl export``)."""

    def __init__(self, schema: PhaseSchema) -> None:
        self._envelope = [n for n, _ in schema.columns() if n != "data"]
        self._data = [n for n, _ in schema.data_fields()]
        self._whole_data = isinstance(schema.data, Json)
        header = self._envelope + (
            ["data"] if self._whole_data else [f"data.{n}" for n in self._data]
        )
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._gzip = _Gzipped()
        self._csv.writerow(header)

    def add(self, record: dict[str, Any]) -> None:
        row = [_cell(record.get(n)) for n in self._envelope]
        data = record.get("data")
        if self._whole_data:
            row.append(_cell(data))
        else:
            fields = data if isinstance(data, dict) else {}
            row.extend(_cell(fields.get(n)) for n in self._data)
        self._csv.writerow(row)
        if self._text.tell() > 1 << 16:
            self._drain()

    def finish(self) -> bytes:
        self._drain()
        return self._gzip.finish()

    def _drain(self) -> None:
        self._gzip.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return safe_cell(value)
    if isinstance(value, list | dict):
        return _encoder.encode(value).decode()
    return value


@dataclass(slots=True)
class _OpenFiles:
    """The files of the current index, one per format."""

    lines: _Gzipped
    parquet: _ParquetFile
    table: _CsvFile | None
    count: int = 0
    bytes: int = 0


class PhaseWriter:
    """The dataset of one phase, fed its records in order (``add``), rolled at
    ``file_bytes``; every call returns the files it finished."""

    def __init__(
        self,
        schema: PhaseSchema,
        *,
        file_bytes: int,
        row_group_bytes: int,
        csv: bool = False,
    ) -> None:
        self.schema = schema
        self._file_bytes = file_bytes
        self._row_group_bytes = row_group_bytes
        self._csv = csv
        fields = schema.data_fields()
        self._fill = [(n, t) for n, t in fields if needs_filling(t)]
        self._json = [(n, t) for n, t in fields if _has_json(t)]
        self._whole_json = isinstance(schema.data, Json)
        self.index = 0
        self.records = 0
        self.nulled = 0
        self._open: _OpenFiles | None = None

    def _files(self) -> _OpenFiles:
        if self._open is None:
            self._open = _OpenFiles(
                _Gzipped(),
                _ParquetFile(self.schema, self._row_group_bytes),
                _CsvFile(self.schema) if self._csv else None,
            )
        return self._open

    def add(self, lines: Iterable[bytes]) -> list[FinishedFile]:
        """Write these record lines (the sink's JSON, in export order)."""
        finished: list[FinishedFile] = []
        texts: list[bytes] = []  # JSON lines of the current file, gzipped once per call
        files: _OpenFiles | None = None
        for line in lines:
            record = _decoder.decode(line)
            if not isinstance(record, dict):
                continue
            files = self._files()
            record.pop(PHASE_KEY, None)
            data = record.get("data")
            if isinstance(data, dict):
                for name, kind in self._fill:
                    data[name] = fill_empty(kind, data.get(name))
            text = _encoder.encode(record) + b"\n"
            texts.append(text)
            if files.table is not None:
                files.table.add(record)
            if self._whole_json:
                record["data"] = json_text(self.schema.data, data)
            elif isinstance(data, dict):
                for name, kind in self._json:
                    data[name] = json_text(kind, data.get(name))
            files.parquet.add(record, len(text))
            files.count += 1
            files.bytes += len(text)
            if files.bytes >= self._file_bytes:
                files.lines.write(b"".join(texts))
                texts = []
                finished += self._finish(files)
        if texts and files is not None:
            files.lines.write(b"".join(texts))
        return finished

    def finish(self) -> list[FinishedFile]:
        """The last files (none when the current ones hold no record)."""
        return self._finish(self._open) if self._open is not None else []

    def _finish(self, files: _OpenFiles) -> list[FinishedFile]:
        phase, count = self.schema.phase, files.count
        bodies: list[tuple[DatasetFormat, bytes]] = [
            ("jsonl", files.lines.finish()),
            ("parquet", files.parquet.finish()),
        ]
        if files.table is not None:
            bodies.append(("csv", files.table.finish()))
        self.nulled += files.parquet.nulled
        finished_files = [
            FinishedFile(
                relative=dataset_file(phase, self.index, fmt),
                format=fmt,
                phase=phase,
                data=body,
                records=count,
                sha256=hashlib.sha256(body).hexdigest(),
            )
            for fmt, body in bodies
        ]
        self.records += count
        self.index += 1
        self._open = None
        return finished_files
