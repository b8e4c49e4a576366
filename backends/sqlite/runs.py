"""The store of one embedded execution: ``<out>/<execution_id>/state.db``.

``open_run`` opens (or creates) the file and gives the three adapters over it, with what it
holds loaded; ``find_runs`` lists the executions a directory holds without loading them.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec

from backends.clock import Clock
from backends.errors import InvalidInputError
from backends.sqlite.db import SqliteDb
from backends.sqlite.queue import SqliteTaskQueue
from backends.sqlite.seen import SqliteSeenSet
from backends.sqlite.state import SqliteStateStore
from backends.state import Execution

STATE_FILE = "state.db"

_execution = msgspec.json.Decoder(Execution)
_transition = msgspec.json.Decoder(tuple[str, str, list[str], str | None])


@dataclass(slots=True)
class RunStore:
    """The adapters of one execution's store file."""

    db: SqliteDb
    state: SqliteStateStore
    seen: SqliteSeenSet
    queue: SqliteTaskQueue
    lock: int = -1  # the descriptor whose flock says this process has the file

    async def close(self) -> None:
        """Commit everything and close the file."""
        try:
            await self.queue.close()
            self.db.close()
        finally:
            if self.lock >= 0:
                os.close(self.lock)
                self.lock = -1


def state_file(out_dir: Path, execution_id: str) -> Path:
    return out_dir / execution_id / STATE_FILE


class StoreBusy(InvalidInputError):
    """Another process has the store file open."""

    error_class = "store_busy"


async def open_run(path: Path, clock: Clock, *, ack_deadline_s: float) -> RunStore:
    """The adapters over the store file ``path`` (created if missing), its content loaded.
    The queue's tasks are not ready until ``queue.restore()``. StoreBusy if another process
    has it open (two runs of one execution would fetch everything twice)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(path.with_name(path.name + ".lock"))
    try:
        db = SqliteDb(path)
        try:
            state = await SqliteStateStore.open(db, clock)
            seen = await SqliteSeenSet.open(db)
            queue = SqliteTaskQueue(db, clock, ack_deadline_s=ack_deadline_s)
        except BaseException:
            db.close()
            raise
    except BaseException:
        os.close(lock)
        raise
    return RunStore(db, state, seen, queue, lock)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"{path.parent} is in use by another trawl run") from None
    return fd


@dataclass(frozen=True, slots=True)
class StoredRun:
    """An execution found in an output directory, as its store file last recorded it."""

    execution_id: str
    path: Path
    status: str
    created_at: datetime


def find_runs(out_dir: Path) -> list[StoredRun]:
    """The executions under ``out_dir`` that have a store file, newest first. A file that
    cannot be read as one (not SQLite, no execution in it) is left out."""
    runs = []
    for path in sorted(out_dir.glob(f"*/{STATE_FILE}")):
        run = _read_run(path)
        if run is not None:
            runs.append(run)
    runs.sort(key=lambda run: (run.created_at, run.execution_id), reverse=True)
    return runs


def _read_run(path: Path) -> StoredRun | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT kind, body FROM events"
                " WHERE kind IN ('create_execution', 'transition') ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    execution: Execution | None = None
    status = ""
    for kind, body in rows:
        if kind == "create_execution":
            execution = _execution.decode(body)
            status = execution.status
        elif execution is not None:
            execution_id, to_status, _, _ = _transition.decode(body)
            if execution_id == execution.id:
                status = to_status
    if execution is None:
        return None
    return StoredRun(execution.id, path, status, execution.created_at)
