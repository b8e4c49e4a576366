"""SqliteTaskQueue: the memory queue, with the tasks not yet acked kept in SQLite.

Deliveries, deadlines and nacks behave as in ``MemoryTaskQueue``; what the file adds is that
a task stays on disk from its publish until its ack. A task published while one for the same
(execution, URL) is still unacked is not queued again. Opening a queue on an existing file
makes every task that was not acked ready again, in publish order: those that were waiting,
those nacked for a retry, and those in flight when the process stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from backends.clock import Clock
from backends.memory.queue import MemoryTaskQueue, _Lease, _Message
from backends.queue import QueueClosed
from backends.sqlite.db import SqliteDb
from backends.task import Task, decode_task, encode_task

_INSERT = "INSERT INTO queue (id, body) VALUES (?, ?)"
_DELETE = "DELETE FROM queue WHERE id = ?"


class SqliteTaskQueue(MemoryTaskQueue):
    """An in-process queue whose unacked tasks survive the process."""

    def __init__(
        self, db: SqliteDb, clock: Clock | None = None, *, ack_deadline_s: float = 60.0
    ) -> None:
        super().__init__(clock, ack_deadline_s=ack_deadline_s)
        self._db = db
        self._row_of: dict[int, int] = {}  # id() of a queued message -> its row
        self._unacked: Counter[tuple[str, str]] = Counter()  # (execution, task key) -> messages
        (last,) = db.query("SELECT COALESCE(MAX(id), 0) FROM queue")[0]
        self._next_row = int(last) + 1

    async def restore(self, keep: Callable[[Task], bool] | None = None) -> int:
        """Make the file's unacked tasks ready again; a task ``keep`` refuses is dropped
        (acked) instead. Returns how many were made ready."""
        ready: list[Task] = []
        rows: list[int] = []
        dropped: list[tuple[int]] = []
        for row, body in self._db.query("SELECT id, body FROM queue ORDER BY id"):
            task = decode_task(body)
            if keep is None or keep(task):
                ready.append(task)
                rows.append(row)
            else:
                dropped.append((row,))
        self._db.write(_DELETE, dropped)
        self._enqueue(ready, rows)
        return len(ready)

    def queued_tasks(self) -> list[Task]:
        """The tasks not yet acked (ready, delayed or in flight)."""
        return [decode_task(body) for (body,) in self._db.query("SELECT body FROM queue")]

    async def publish(self, tasks: Sequence[Task]) -> None:
        if self._closed:
            raise QueueClosed("the queue is closed")
        # One process runs every task of this queue, so a task still waiting or in flight is
        # not queued again: a parent handed back (or restored by a resume) re-publishes its
        # links, which must not be fetched twice.
        fresh: dict[tuple[str, str], Task] = {}
        for task in tasks:
            key = (task.execution_id, task.ledger_key)
            if key not in self._unacked:
                fresh.setdefault(key, task)
        tasks = list(fresh.values())
        rows = list(range(self._next_row, self._next_row + len(tasks)))
        self._next_row += len(tasks)
        self._db.write(_INSERT, [(row, encode_task(t)) for row, t in zip(rows, tasks, strict=True)])
        self._enqueue(tasks, rows)

    def _enqueue(self, tasks: Sequence[Task], rows: Sequence[int]) -> None:
        """What ``MemoryTaskQueue.publish`` does, remembering each message's row."""
        for task, row in zip(tasks, rows, strict=True):
            message = _Message(task)
            self._row_of[id(message)] = row
            self._unacked[(task.execution_id, task.ledger_key)] += 1
            self._ready.append(message)
        self._wake(len(tasks))

    def _settle(self, lease: _Lease, redeliver_after_s: float | None) -> None:
        self._fire_timers()  # an expired lease is not this ack's any more
        acked = redeliver_after_s is None and lease in self._leases
        super()._settle(lease, redeliver_after_s)
        if acked:
            self._forget(lease.message)

    def _forget(self, message: _Message) -> None:
        row = self._row_of.pop(id(message), None)
        if row is not None:
            self._db.write(_DELETE, [(row,)])
            key = (message.task.execution_id, message.task.ledger_key)
            self._unacked[key] -= 1
            if self._unacked[key] <= 0:
                del self._unacked[key]

    async def close(self) -> None:
        await super().close()
        self._db.flush()
