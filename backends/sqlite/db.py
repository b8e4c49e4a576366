"""One SQLite file (WAL) shared by the embedded adapters, with batched writes.

Writes are buffered in order and committed together, one transaction per flush: at most
``max_pending`` statements or ``flush_interval_s`` after the first one, and always on
``flush``/``close``. A transaction holds a few hundred rows and takes well under a
millisecond, so it runs on the event loop. Because the buffer is committed in order, what a
crash leaves on disk is always a prefix of what the process did: consistent, only a little
behind (the last ``flush_interval_s`` at most).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
CREATE TABLE IF NOT EXISTS seen (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    claimer TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
"""

Row = tuple[Any, ...]


class SqliteDb:
    """A connection to one store file and its write buffer."""

    def __init__(
        self, path: Path | str, *, flush_interval_s: float = 0.05, max_pending: int = 2000
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._pending: list[tuple[str, list[Row]]] = []
        self._pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def write(self, sql: str, rows: Iterable[Row]) -> None:
        """Queue ``sql`` for each of ``rows``; committed with the next flush."""
        batch = list(rows)
        if not batch:
            return
        if self._closed:
            raise RuntimeError(f"{self.path}: the store is closed")
        if self._pending and self._pending[-1][0] == sql:
            self._pending[-1][1].extend(batch)
        else:
            self._pending.append((sql, batch))
        self._pending_rows += len(batch)
        if self._pending_rows >= self._max_pending:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(self._flush_interval_s, self.flush)

    def flush(self) -> None:
        """Commit everything buffered, in order, in one transaction."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            for sql, rows in self._pending:
                self._conn.executemany(sql, rows)
        self._pending.clear()
        self._pending_rows = 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a read, after committing what is buffered (so it sees every write)."""
        self.flush()
        return list(self._conn.execute(sql, params))

    def close(self) -> None:
        """Commit what is buffered and close the file (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._conn.close()
