"""An external merge sort of an execution's record lines, in bounded memory.

Pass 1 reads the part files one at a time and decodes only each line's key (``RecordKey``:
phase, url, depth). Each line becomes one bytes object that sorts by itself: the key, the
order the line was read in, then the line (``sort_line``). Lines collect in memory until
they reach ``chunk_bytes``; the chunk is sorted and spilled to the blob store as a *run*
(``<execution>/export/.runs/<build>/``, in segments of ``segment_bytes``: not local disk,
which on Cloud Run is memory too). Pass 2 merges the runs, reading each in chunks of
``read_bytes``, and yields the lines in order. More than ``fan_in`` runs are first merged
``fan_in`` at a time into longer runs, so memory stays bounded however many there are. A
crawl whose lines fit in one chunk never spills.

The order is (phase, url, depth, order read): of lines with one key, the first read (parts
by name, lines in file order) comes first, which the exactly-once rule relies on ("the
lowest depth, then the first read"). A plain bytes comparison gives it: the fields are
separated by NUL, which neither a phase, a URL nor a JSON line contains, and UTF-8 sorts as
the text does. ``close`` deletes the runs.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass
from sys import intern
from typing import Final

from backends.blobs import BlobStore
from worker.export.cpu import on_cpu, release_memory
from worker.paths import run_path
from worker.records import KEY_DECODER

BATCH_LINES: Final = 1024  # lines handed on at a time
_SEP: Final = b"\x00"


@dataclass(frozen=True, slots=True)
class SortOptions:
    chunk_bytes: int = 24 << 20
    segment_bytes: int = 8 << 20
    read_bytes: int = 128 << 10
    fan_in: int = 32


def sort_lines(data: bytes, first: int) -> list[bytes]:
    """The non-blank lines of a part file as sortable lines, numbered from ``first``."""
    out: list[bytes] = []
    for line in data.split(b"\n"):
        if line.strip():
            key = KEY_DECODER.decode(line)
            phase, url = _clean(key.phase), _clean(key.url)
            head = f"{phase}\x00{url}\x00{key.depth:010d}\x00{first + len(out):012d}\x00"
            out.append(head.encode() + line)
    return out


def _clean(text: str) -> str:
    """``text`` without NUL (never in a phase or a canonical URL; escaped should one be)."""
    return text.replace("\x00", "%00") if "\x00" in text else text


def split_line(sortable: bytes) -> tuple[str, str, bytes]:
    """(phase, url, the record's JSON) of a sortable line."""
    phase, url, _depth, _order, line = sortable.split(_SEP, 4)
    return intern(phase.decode()), url.decode(), line


class ExternalSort:
    """Feed it part files (``add``), then read the lines in order (``sorted``)."""

    def __init__(
        self, blobs: BlobStore, execution_id: str, build_id: str, options: SortOptions
    ) -> None:
        self._blobs = blobs
        self._execution_id = execution_id
        self._build_id = build_id
        self._options = options
        self._chunk: list[bytes] = []
        self._chunk_bytes = 0
        self._runs: list[list[str]] = []  # each run: its segments, in order
        self._written: list[str] = []
        self._next_run = 0
        self.lines = 0

    @property
    def runs_written(self) -> int:
        """How many runs were spilled (0: every line fitted in one chunk)."""
        return self._next_run

    async def add(self, data: bytes) -> None:
        """The lines of one part file."""
        lines = await on_cpu(sort_lines, data, self.lines)
        self._chunk += lines
        self._chunk_bytes += sum(len(line) for line in lines)
        self.lines += len(lines)
        if self._chunk_bytes >= self._options.chunk_bytes:
            await self._spill()

    async def sorted(self) -> AsyncIterator[list[bytes]]:
        """Every line added, in order, in batches of sortable lines (``split_line``)."""
        if not self._runs:
            await on_cpu(self._chunk.sort)
            chunk, self._chunk = self._chunk, []
            for start in range(0, len(chunk), BATCH_LINES):
                yield chunk[start : start + BATCH_LINES]
            return
        if self._chunk:
            await self._spill()
        release_memory()  # the chunks are gone; the merge needs far less
        runs = self._runs
        while len(runs) > self._options.fan_in:
            runs = [
                await self._write_run(self._merge(runs[i : i + self._options.fan_in]))
                for i in range(0, len(runs), self._options.fan_in)
            ]
        async for batch in self._merge(runs):
            yield batch

    async def close(self) -> None:
        """Delete every run this sort wrote."""
        for path in self._written:
            await self._blobs.delete(path)
        self._written = []

    async def _spill(self) -> None:
        chunk, self._chunk, self._chunk_bytes = self._chunk, [], 0
        await on_cpu(chunk.sort)

        async def batches() -> AsyncIterator[list[bytes]]:
            for start in range(0, len(chunk), BATCH_LINES):
                yield chunk[start : start + BATCH_LINES]

        self._runs.append(await self._write_run(batches()))

    async def _write_run(self, batches: AsyncIterator[list[bytes]]) -> list[str]:
        """Store the lines of ``batches`` as a new run; its segments."""
        run = self._next_run
        self._next_run += 1
        segments: list[str] = []
        pending: list[bytes] = []
        size = 0

        async def write_segment() -> None:
            nonlocal pending, size
            path = run_path(self._execution_id, self._build_id, run, len(segments))
            await self._blobs.write(path, b"".join(pending))
            self._written.append(path)
            segments.append(path)
            pending, size = [], 0

        async for batch in batches:
            for line in batch:
                pending.append(line + b"\n")
                size += len(line) + 1
                if size >= self._options.segment_bytes:
                    await write_segment()
        if pending:
            await write_segment()
        return segments

    async def _merge(self, runs: list[list[str]]) -> AsyncIterator[list[bytes]]:
        """The lines of ``runs`` in order."""
        cursors = [_Cursor(self._blobs, run, self._options.read_bytes) for run in runs]
        heap: list[tuple[bytes, int]] = []
        for index, cursor in enumerate(cursors):
            if await cursor.fill():
                heap.append((cursor.line(), index))
        heapq.heapify(heap)
        out: list[bytes] = []
        while heap:
            line, index = heap[0]
            out.append(line)
            cursor = cursors[index]
            if cursor.advance() or await cursor.fill():
                heapq.heapreplace(heap, (cursor.line(), index))
            else:
                heapq.heappop(heap)
            if len(out) >= BATCH_LINES:
                yield out
                out = []
        if out:
            yield out


class _Cursor:
    """One run, read a chunk at a time: the line at hand and the rest of its chunk."""

    def __init__(self, blobs: BlobStore, segments: list[str], read_bytes: int) -> None:
        self._chunks = self._read(blobs, segments, read_bytes)
        self._lines: list[bytes] = []
        self._at = 0

    @staticmethod
    async def _read(
        blobs: BlobStore, segments: list[str], read_bytes: int
    ) -> AsyncIterator[list[bytes]]:
        """The run's lines a chunk at a time, the next chunk read while this one is used:
        the merge's reads of every run overlap rather than wait one after another (a
        ranged read of GCS takes tens of milliseconds)."""
        for segment in segments:
            chunks = blobs.iter_chunks(segment, read_bytes)
            ahead = asyncio.ensure_future(anext(chunks, None))
            rest = b""
            try:
                while (chunk := await ahead) is not None:
                    ahead = asyncio.ensure_future(anext(chunks, None))
                    rest += chunk
                    cut = rest.rfind(b"\n")
                    if cut < 0:
                        continue
                    yield rest[:cut].split(b"\n")
                    rest = rest[cut + 1 :]
            finally:
                ahead.cancel()
                await asyncio.wait([ahead])  # let it end before the generator is closed
                if not ahead.cancelled():
                    ahead.exception()  # seen: an error here is the one being raised already
                close = getattr(chunks, "aclose", None)  # an async generator's
                if close is not None:
                    await close()
            if rest:
                yield rest.split(b"\n")

    async def fill(self) -> bool:
        """Read the next chunk that holds a line; False at the end of the run."""
        while (lines := await anext(self._chunks, None)) is not None:
            lines = [line for line in lines if line]
            if lines:
                self._lines, self._at = lines, 0
                return True
        return False

    def line(self) -> bytes:
        return self._lines[self._at]

    def advance(self) -> bool:
        """Move to the next line of the chunk at hand; False when it has none left."""
        self._at += 1
        return self._at < len(self._lines)
