"""SqliteStateStore: the memory store, with every change journaled to SQLite.

Reads are answered from memory, as in ``MemoryStateStore``. Each change that took effect to
what an embedded run needs back (workflows, executions, task registrations and results,
outputs) is appended to the ``events`` table with the wall time it happened at. Opening a
store on an existing file replays those events through the same in-memory logic, with the
clock showing each event's recorded time, so counters, failures, executions and their
timestamps come back exactly as they were. What only distributed workers use (leases,
claims, freezing a cancelled execution's counters, the webhook outbox, which ``trawl run``
never sends from) stays in memory: a resumed execution starts unfrozen. So do secrets and
login sessions, which must never reach the file: ``trawl run --resume`` takes the secrets
from the environment again, and logs in again. Schedules too: only the orchestrator runs
them, and ``trawl run`` has none. A prune (``RetentionStore``) is journaled, so a reopened
store does not bring the pruned task entries back; the file itself does not shrink.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import msgspec

from backends.clock import Clock, SystemClock
from backends.memory.state import MemoryStateStore
from backends.sqlite.db import SqliteDb
from backends.state import (
    PRUNE_BATCH,
    Execution,
    ExecutionStatus,
    OutputObject,
    PruneCounts,
    Registered,
    TaskResult,
)

_encoder = msgspec.json.Encoder()

# Event kinds and the argument tuples they carry.
_EVENT_TYPES: dict[str, Any] = {
    "put_workflow": tuple[str, str, str, str],
    "delete_workflow": tuple[str, str],
    "create_execution": Execution,
    "transition": tuple[str, str, list[str], str | None],
    "put_api_key": tuple[str, str],
    "add_tasks": tuple[str, list[str], list[str] | None],
    "hold_tasks": tuple[str, list[str]],
    "release_tasks": tuple[str, list[str]],
    "remove_tasks": tuple[str, list[str]],
    "finish_tasks": tuple[str, list[TaskResult]],
    "add_output": tuple[str, OutputObject],
    "prune_execution": tuple[str],
}
_DECODERS = {kind: msgspec.json.Decoder(t) for kind, t in _EVENT_TYPES.items()}
_INSERT = "INSERT INTO events (kind, at, body) VALUES (?, ?, ?)"


class _ReplayClock:
    """The store's clock: the real one, except that replay pins ``wall`` to an event's time."""

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self.pinned: datetime | None = None

    def now(self) -> float:
        return self.inner.now()

    def wall(self) -> datetime:
        return self.pinned if self.pinned is not None else self.inner.wall()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return self.inner.sleep(seconds)


class SqliteStateStore(MemoryStateStore):
    """Workflows, executions and counters, kept in memory and journaled to ``db``."""

    def __init__(self, db: SqliteDb, clock: Clock | None = None) -> None:
        self._replay_clock = _ReplayClock(clock or SystemClock())
        super().__init__(self._replay_clock)
        self._db = db
        self._replaying = False
        self._finished: dict[str, set[str]] = {}

    @classmethod
    async def open(cls, db: SqliteDb, clock: Clock | None = None) -> SqliteStateStore:
        """The store over ``db``, with every journaled change replayed."""
        store = cls(db, clock)
        await store._replay()
        return store

    async def _replay(self) -> None:
        handlers: dict[str, Callable[[Any], Any]] = {
            "put_workflow": lambda a: self.put_workflow(*a),
            "delete_workflow": lambda a: self.delete_workflow(*a),
            "create_execution": self.create_execution,
            "transition": lambda a: self.transition(a[0], a[1], from_statuses=a[2], error=a[3]),
            "put_api_key": lambda a: self.put_api_key(*a),
            "add_tasks": lambda a: self.add_tasks(a[0], a[1], payloads=a[2]),
            "hold_tasks": lambda a: self._hold(*a),
            "release_tasks": lambda a: self._unhold(*a),
            "remove_tasks": lambda a: self.remove_tasks(*a),
            "finish_tasks": lambda a: self.finish_tasks(*a),
            "add_output": lambda a: self.add_output(*a),
            "prune_execution": lambda a: self._prune_now(*a),
        }
        self._replaying = True
        try:
            for kind, at, body in self._db.query("SELECT kind, at, body FROM events ORDER BY seq"):
                self._replay_clock.pinned = datetime.fromisoformat(at)
                await handlers[kind](_DECODERS[kind].decode(body))
        finally:
            self._replaying = False
            self._replay_clock.pinned = None

    def _log(self, kind: str, args: Any) -> None:
        if not self._replaying:
            at = self._replay_clock.wall().isoformat()
            self._db.write(_INSERT, [(kind, at, _encoder.encode(args))])

    def finished_keys(self, execution_id: str) -> set[str]:
        """The task keys of ``execution_id`` that have finished (a copy)."""
        return set(self._finished.get(execution_id, ()))

    # -- workflows

    async def put_workflow(self, tenant: str, name: str, source_text: str, spec_json: str) -> int:
        version = await super().put_workflow(tenant, name, source_text, spec_json)
        self._log("put_workflow", (tenant, name, source_text, spec_json))
        return version

    async def delete_workflow(self, tenant: str, name: str) -> bool:
        deleted = await super().delete_workflow(tenant, name)
        if deleted:
            self._log("delete_workflow", (tenant, name))
        return deleted

    # -- executions

    async def create_execution(self, execution: Execution) -> None:
        await super().create_execution(execution)
        self._log("create_execution", execution)

    async def transition(
        self,
        execution_id: str,
        to_status: ExecutionStatus,
        *,
        from_statuses: Collection[ExecutionStatus],
        error: str | None = None,
    ) -> bool:
        moved = await super().transition(
            execution_id, to_status, from_statuses=from_statuses, error=error
        )
        if moved:
            self._log("transition", (execution_id, to_status, sorted(from_statuses), error))
        return moved

    async def put_api_key(self, key_hash: str, tenant: str) -> None:
        await super().put_api_key(key_hash, tenant)
        self._log("put_api_key", (key_hash, tenant))

    # -- tasks

    async def register_tasks(
        self,
        execution_id: str,
        keys: Sequence[str],
        *,
        max_total: int = 0,
        payloads: Sequence[str] | None = None,
        window: int = 0,
    ) -> Registered:
        registered = await super().register_tasks(
            execution_id, keys, max_total=max_total, payloads=payloads, window=window
        )
        accepted = registered.publish + registered.held
        if accepted:
            # What was accepted, not what was asked: replayed, it registers the same keys
            # whatever limit refused the rest; then the held ones are held again.
            kept = None
            if payloads is not None:
                payload_of = dict(zip(keys, payloads, strict=True))
                kept = [payload_of[key] for key in accepted]
            self._log("add_tasks", (execution_id, accepted, kept))
        if registered.held:
            self._log("hold_tasks", (execution_id, registered.held))
        return registered

    async def release_tasks(self, execution_id: str, *, window: int) -> list[str]:
        keys = self._releasable(execution_id, window)
        if not keys:
            return []
        self._log("release_tasks", (execution_id, keys))
        return self._release(self._tasks[execution_id], keys)

    async def _hold(self, execution_id: str, keys: list[str]) -> None:
        """Replay: hold again keys an add_tasks event registered as queued."""
        tasks = self._tasks[execution_id]
        for key in keys:
            tasks.held[key] = None
        tasks.queued = max(tasks.queued - len(keys), 0)

    async def _unhold(self, execution_id: str, keys: list[str]) -> None:
        """Replay: release the keys a release_tasks event released."""
        self._release(self._tasks[execution_id], keys)

    async def remove_tasks(self, execution_id: str, keys: Sequence[str]) -> int:
        removed = await super().remove_tasks(execution_id, keys)
        if removed:
            self._log("remove_tasks", (execution_id, list(keys)))
        return removed

    async def finish_tasks(self, execution_id: str, results: Sequence[TaskResult]) -> int:
        counted = await super().finish_tasks(execution_id, results)
        if results:
            self._finished.setdefault(execution_id, set()).update(r.key for r in results)
        if counted:
            self._log("finish_tasks", (execution_id, list(results)))
        return counted

    # -- outputs

    async def add_output(self, execution_id: str, output: OutputObject) -> None:
        await super().add_output(execution_id, output)
        self._log("add_output", (execution_id, output))

    # -- retention: journaled, so a reopened store does not bring the rows back

    async def prune_execution(
        self,
        execution_id: str,
        *,
        ended_before: datetime,
        batch: int = PRUNE_BATCH,
        dry_run: bool = False,
    ) -> PruneCounts:
        counts = await super().prune_execution(
            execution_id, ended_before=ended_before, batch=batch, dry_run=dry_run
        )
        if counts.executions and not dry_run:
            self._log("prune_execution", (execution_id,))
        return counts

    async def _prune_now(self, execution_id: str) -> None:
        await super()._prune_now(execution_id)
        self._finished.pop(execution_id, None)

    async def close(self) -> None:
        self._db.flush()
        await super().close()
