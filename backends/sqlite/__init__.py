"""Embedded adapters that survive the process: the memory adapters, journaled to one SQLite
file (WAL) per execution, so an interrupted ``trawl run`` can be resumed."""

from backends.sqlite.db import SqliteDb
from backends.sqlite.queue import SqliteTaskQueue
from backends.sqlite.runs import (
    STATE_FILE,
    RunStore,
    StoreBusy,
    StoredRun,
    find_runs,
    open_run,
    state_file,
)
from backends.sqlite.seen import SqliteSeenSet
from backends.sqlite.state import SqliteStateStore

__all__ = [
    "STATE_FILE",
    "RunStore",
    "SqliteDb",
    "SqliteSeenSet",
    "SqliteStateStore",
    "SqliteTaskQueue",
    "StoreBusy",
    "StoredRun",
    "find_runs",
    "open_run",
    "state_file",
]
