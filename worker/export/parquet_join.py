"""Several Parquet files of one phase rewritten as one, a row group at a time.

A phase's dataset rolls into several files once it is large; a download of the phase
(``format=parquet``) is one file. Parquet files cannot be concatenated as bytes, so their
row groups are copied into a new writer whose output is handed on as it grows: one input
file in memory at a time, never the whole result.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from worker.export.formats import PARQUET_COMPRESSION, arrow_schema
from worker.export.schema import PhaseSchema


class _Drain:
    """A write-only file whose bytes are taken away as they come (``take``)."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._pieces.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces = []
        return data


class ParquetJoin:
    """Feed it the files in order (``add``), then ``finish``; each call returns the bytes
    of the joined file written meanwhile. ``schema``: the phase's, for a phase with no file
    (an empty Parquet file of that schema)."""

    def __init__(self, schema: PhaseSchema | None) -> None:
        self._schema = schema
        self._drain = _Drain()
        self._writer: Any = None

    def _open(self, arrow: Any) -> Any:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                pa.PythonFile(self._drain, mode="w"), arrow, compression=PARQUET_COMPRESSION
            )
        return self._writer

    def add(self, data: bytes) -> bytes:
        file = pq.ParquetFile(pa.BufferReader(data))
        writer = self._open(file.schema_arrow)
        for group in range(file.num_row_groups):
            writer.write_table(file.read_row_group(group))
        return self._drain.take()

    def finish(self) -> bytes:
        if self._writer is None:
            if self._schema is None:
                raise ValueError("no Parquet file and no schema to write an empty one")
            self._open(arrow_schema(self._schema))
        self._writer.close()
        return self._drain.take()
