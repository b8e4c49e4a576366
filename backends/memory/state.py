"""MemoryStateStore: the StateStore of embedded mode, in dicts.

No method awaits between reading and writing, so each is one atomic step on the event loop,
which is what the Postgres adapter gets from transactions.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.memory.schedules import MemorySchedules
from backends.state import (
    MAX_WARNING_EXAMPLES,
    PRUNE_BATCH,
    TERMINAL_STATUSES,
    Activity,
    ApiKey,
    Backlog,
    Execution,
    ExecutionStatus,
    Failure,
    KeyCheck,
    LoginSession,
    OutputObject,
    Progress,
    PruneCounts,
    Registered,
    SecretInfo,
    StateStore,
    StoredWorkflow,
    TaskResult,
    WarningExample,
    WebhookDelivery,
    check_prune_batch,
    key_id_of,
    nest_funnel,
)


@dataclass(slots=True)
class _Workflow:
    versions: list[StoredWorkflow] = field(default_factory=list)
    last_version: int = 0  # survives deletes, so a version number is never reused


@dataclass(slots=True)
class _Tasks:
    """The task counters of one execution."""

    finished_keys: dict[str, bool] = field(default_factory=dict)  # key -> finished
    finished: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_phase: dict[str, Counter[str]] = field(default_factory=dict)
    by_marker: dict[str, Counter[str]] = field(default_factory=dict)
    failures_by_class: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    funnel: Counter[str] = field(default_factory=Counter)
    records: int = 0
    failures: list[Failure] = field(default_factory=list)
    outputs: dict[str, OutputObject] = field(default_factory=dict)
    # For the reconciler: payloads and registration times of keys, leases, activity.
    payloads: dict[str, str] = field(default_factory=dict)
    registered_at: dict[str, datetime] = field(default_factory=dict)
    leased_until: dict[str, datetime] = field(default_factory=dict)
    # The window (see StateStore.register_tasks): held keys in registration order, and how
    # many released keys are unfinished.
    held: dict[str, None] = field(default_factory=dict)
    queued: int = 0
    last_finished_at: datetime | None = None
    last_leased_at: datetime | None = None
    frozen_at: datetime | None = None
    pruned: int = 0  # keys whose entries retention deleted: still published
    # (kind, phase, field) -> [count, example URLs up to MAX_WARNING_EXAMPLES]
    warning_examples: dict[tuple[str, str, str], tuple[list[int], list[str]]] = field(
        default_factory=dict
    )


class MemoryStateStore(MemorySchedules, StateStore):
    """Workflows, executions and counters of this process (schedules: ``MemorySchedules``)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._workflows: dict[tuple[str, str], _Workflow] = {}
        self._executions: dict[str, Execution] = {}
        self._tasks: dict[str, _Tasks] = {}
        self._keys: dict[str, ApiKey] = {}  # by hash
        self._claims: dict[str, tuple[str, datetime, datetime]] = {}  # owner, at, until
        self._webhooks: dict[str, WebhookDelivery] = {}  # by execution
        self._secrets: dict[tuple[str, str], tuple[str, datetime]] = {}  # value, updated
        self._sessions: dict[str, LoginSession] = {}  # by execution

    # -- workflows

    async def put_workflow(self, tenant: str, name: str, source_text: str, spec_json: str) -> int:
        workflow = self._workflows.setdefault((tenant, name), _Workflow())
        workflow.last_version += 1
        workflow.versions.append(
            StoredWorkflow(
                tenant=tenant,
                name=name,
                version=workflow.last_version,
                source_text=source_text,
                spec_json=spec_json,
                created_at=self._clock.wall(),
            )
        )
        return workflow.last_version

    async def get_workflow(
        self, tenant: str, name: str, version: int | None = None
    ) -> StoredWorkflow | None:
        workflow = self._workflows.get((tenant, name))
        if workflow is None or not workflow.versions:
            return None
        if version is None:
            return workflow.versions[-1]
        for stored in workflow.versions:
            if stored.version == version:
                return stored
        return None

    async def list_workflows(self, tenant: str) -> list[StoredWorkflow]:
        return sorted(
            (w.versions[-1] for (t, _), w in self._workflows.items() if t == tenant and w.versions),
            key=lambda stored: stored.name,
        )

    async def delete_workflow(self, tenant: str, name: str) -> bool:
        workflow = self._workflows.get((tenant, name))
        if workflow is None or not workflow.versions:
            return False
        workflow.versions.clear()
        return True

    # -- executions

    async def create_execution(self, execution: Execution) -> None:
        if execution.id in self._executions:
            raise InvalidInputError(
                f"execution {execution.id!r} already exists", error_class="conflict"
            )
        self._executions[execution.id] = execution

    async def get_execution(self, execution_id: str) -> Execution | None:
        return self._executions.get(execution_id)

    async def list_executions(
        self, tenant: str, *, workflow: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        matching = [
            e
            for e in self._executions.values()
            if e.tenant == tenant and (workflow is None or e.workflow == workflow)
        ]
        matching.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        return matching[offset : offset + limit]

    async def count_active_executions(self, tenant: str) -> int:
        return sum(
            1
            for e in self._executions.values()
            if e.tenant == tenant and e.status not in TERMINAL_STATUSES
        )

    async def create_execution_capped(self, execution: Execution, max_active: int) -> bool:
        if await self.count_active_executions(execution.tenant) >= max_active:
            return False
        await self.create_execution(execution)
        return True

    # -- API keys

    async def create_api_key(
        self,
        key_hash: str,
        tenant: str,
        *,
        admin: bool = False,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        key_id = key_id_of(key_hash)
        if key_hash in self._keys or any(k.id == key_id for k in self._keys.values()):
            raise InvalidInputError("that API key exists")
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            created_at=self._clock.wall(),
            admin=admin,
            expires_at=expires_at,
        )
        self._keys[key_hash] = key
        return key

    async def check_api_key(self, key_hash: str) -> KeyCheck:
        key = self._keys.get(key_hash)
        if key is None:
            return KeyCheck(refused="unknown")
        if key.revoked_at is not None:
            return KeyCheck(refused="revoked")
        if key.expires_at is not None and key.expires_at <= self._clock.wall():
            return KeyCheck(refused="expired")
        return KeyCheck(key=key)

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKey]:
        found = [k for k in self._keys.values() if tenant is None or k.tenant == tenant]
        return sorted(found, key=lambda k: (k.created_at, k.id))

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        for key_hash, key in self._keys.items():
            if key.id == key_id:
                if key.revoked_at is not None:
                    return key
                revoked = msgspec.structs.replace(key, revoked_at=self._clock.wall())
                self._keys[key_hash] = revoked
                return revoked
        return None

    async def transition(
        self,
        execution_id: str,
        to_status: ExecutionStatus,
        *,
        from_statuses: Collection[ExecutionStatus],
        error: str | None = None,
    ) -> bool:
        execution = self._executions.get(execution_id)
        if execution is None or execution.status not in from_statuses:
            return False
        now = self._clock.wall()
        changes: dict[str, object] = {"status": to_status}
        if to_status == "running" and execution.started_at is None:
            changes["started_at"] = now
        if to_status in TERMINAL_STATUSES:
            changes["finished_at"] = now
        if error is not None:
            changes["error"] = error
        self._executions[execution_id] = msgspec.structs.replace(execution, **changes)
        return True

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
        tasks = self._tasks.setdefault(execution_id, _Tasks())
        if tasks.frozen_at is not None:
            return Registered()
        known = tasks.finished_keys
        payload_of = dict(zip(keys, payloads, strict=True)) if payloads is not None else {}
        now = self._clock.wall()
        publish: list[str] = []
        held: list[str] = []
        for key in dict.fromkeys(keys):
            finished = known.get(key)
            if finished is None:
                if max_total > 0 and len(known) >= max_total:
                    continue
                known[key] = False
                tasks.registered_at[key] = now
                if key in payload_of:
                    tasks.payloads[key] = payload_of[key]
                    if 0 < window <= tasks.queued:
                        tasks.held[key] = None
                        held.append(key)
                        continue
                tasks.queued += 1
                publish.append(key)
            elif not finished and key not in tasks.held:
                publish.append(key)
        return Registered(publish=publish, held=held)

    async def release_tasks(self, execution_id: str, *, window: int) -> list[str]:
        keys = self._releasable(execution_id, window)
        return self._release(self._tasks[execution_id], keys) if keys else []

    def _releasable(self, execution_id: str, window: int) -> list[str]:
        """The held keys ``release_tasks`` would release now, oldest first."""
        tasks = self._tasks.get(execution_id)
        if tasks is None or tasks.frozen_at is not None or not tasks.held:
            return []
        room = window - tasks.queued if window > 0 else len(tasks.held)
        return list(itertools.islice(tasks.held, max(room, 0)))

    def _release(self, tasks: _Tasks, keys: Sequence[str]) -> list[str]:
        now = self._clock.wall()
        for key in keys:
            del tasks.held[key]
            tasks.registered_at[key] = now
        tasks.queued += len(keys)
        return [tasks.payloads[key] for key in keys]

    async def remove_tasks(self, execution_id: str, keys: Sequence[str]) -> int:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return 0
        removed = 0
        for key in keys:
            if tasks.finished_keys.get(key) is False:
                del tasks.finished_keys[key]
                tasks.payloads.pop(key, None)
                tasks.registered_at.pop(key, None)
                tasks.leased_until.pop(key, None)
                self._unqueue(tasks, key)
                removed += 1
        return removed

    @staticmethod
    def _unqueue(tasks: _Tasks, key: str) -> None:
        """A registered, unfinished key leaves the window (finished or removed)."""
        if key in tasks.held:
            del tasks.held[key]
        else:
            tasks.queued = max(tasks.queued - 1, 0)

    async def finish_tasks(self, execution_id: str, results: Sequence[TaskResult]) -> int:
        tasks = self._tasks.setdefault(execution_id, _Tasks())
        if tasks.frozen_at is not None:
            return 0
        counted = 0
        for result in results:
            registered = tasks.finished_keys.get(result.key)
            if registered:
                continue
            if registered is False:
                self._unqueue(tasks, result.key)
            tasks.finished_keys[result.key] = True
            tasks.payloads.pop(result.key, None)
            tasks.leased_until.pop(result.key, None)
            counted += 1
            self._count(tasks, result)
        if counted:
            tasks.last_finished_at = self._clock.wall()
        return counted

    def _count(self, tasks: _Tasks, result: TaskResult) -> None:
        outcome = result.outcome
        tasks.finished += 1
        tasks.by_outcome[outcome] += 1
        tasks.by_phase.setdefault(result.phase, Counter())[outcome] += 1
        tasks.by_marker.setdefault(result.marker or "", Counter())[outcome] += 1
        tasks.records += result.records
        tasks.warnings.update(result.warnings)
        tasks.funnel.update(result.funnel)
        _keep_warning_examples(tasks, result)
        if outcome == "failed":
            error_class = result.error_class or "error"
            tasks.failures_by_class[error_class] += 1
            tasks.failures.append(
                Failure(
                    key=result.key,
                    url=result.url,
                    phase=result.phase,
                    error_class=error_class,
                    message=result.error_message or "",
                    attempt=result.attempt,
                    at=self._clock.wall(),
                )
            )

    async def progress(self, execution_id: str) -> Progress:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return Progress()
        # Copies: the caller must not see (or change) later counts.
        return Progress(
            published=len(tasks.finished_keys) + tasks.pruned,
            finished=tasks.finished,
            by_outcome=dict(tasks.by_outcome),
            by_phase={phase: dict(c) for phase, c in tasks.by_phase.items()},
            by_marker={marker: dict(c) for marker, c in tasks.by_marker.items()},
            failures_by_class=dict(tasks.failures_by_class),
            warnings=dict(tasks.warnings),
            funnel=nest_funnel(tasks.funnel.items()),
            records=tasks.records,
        )

    async def failures(self, execution_id: str, *, limit: int = 100) -> list[Failure]:
        tasks = self._tasks.get(execution_id)
        if tasks is None or limit <= 0:
            return []
        return tasks.failures[: -limit - 1 : -1]

    async def iter_failures(self, execution_id: str) -> AsyncIterator[Failure]:
        tasks = self._tasks.get(execution_id)
        failures = tasks.failures if tasks is not None else []
        for index in range(len(failures)):  # by index: the list may grow meanwhile
            yield failures[index]

    async def warning_examples(self, execution_id: str) -> list[WarningExample]:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return []
        return [
            WarningExample(kind=kind, phase=phase, field=name, count=count[0], urls=list(urls))
            for (kind, phase, name), (count, urls) in sorted(tasks.warning_examples.items())
        ]

    # -- reconciling, stalls and cancels

    async def lease_tasks(self, execution_id: str, keys: Sequence[str], until: datetime) -> int:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return 0
        leased = 0
        for key in dict.fromkeys(keys):
            if tasks.finished_keys.get(key) is False:
                tasks.leased_until[key] = until
                leased += 1
        if leased:
            tasks.last_leased_at = self._clock.wall()
        return leased

    async def live_leases(self, execution_id: str) -> int:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return 0
        now = self._clock.wall()
        return sum(
            1
            for key, until in tasks.leased_until.items()
            if until > now and tasks.finished_keys.get(key) is False
        )

    async def reclaim_tasks(
        self, execution_id: str, *, registered_before: datetime, limit: int = 1000
    ) -> list[str]:
        tasks = self._tasks.get(execution_id)
        if tasks is None or limit <= 0:
            return []
        now = self._clock.wall()
        stale = sorted(
            (at, key)
            for key, at in tasks.registered_at.items()
            if at < registered_before
            and tasks.finished_keys.get(key) is False
            and key in tasks.payloads
            and key not in tasks.held
            and tasks.leased_until.get(key, at) <= now
        )[:limit]
        for _, key in stale:
            tasks.registered_at[key] = now
        return [tasks.payloads[key] for _, key in stale]

    async def activity(self, execution_id: str) -> Activity:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return Activity()
        return Activity(
            last_finished_at=tasks.last_finished_at,
            last_leased_at=tasks.last_leased_at,
            frozen_at=tasks.frozen_at,
        )

    async def freeze(self, execution_id: str) -> bool:
        execution = self._executions.get(execution_id)
        if execution is None or execution.status not in TERMINAL_STATUSES:
            return False
        tasks = self._tasks.setdefault(execution_id, _Tasks())
        if tasks.frozen_at is not None:
            return False
        tasks.frozen_at = self._clock.wall()
        return True

    async def sweep_candidates(self, *, stalled_before: datetime, limit: int = 100) -> list[str]:
        found: list[str] = []
        for execution in sorted(self._executions.values(), key=lambda e: (e.created_at, e.id)):
            tasks = self._tasks.get(execution.id)
            if execution.status == "cancelled":
                if tasks is None or tasks.frozen_at is None:
                    found.append(execution.id)
            elif execution.status == "running" and tasks is not None:
                unfinished = tasks.finished < len(tasks.finished_keys)
                last = tasks.last_finished_at or execution.started_at or execution.created_at
                if unfinished and last < stalled_before:
                    found.append(execution.id)
        return found[:limit]

    async def claim(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.wall()
        held = self._claims.get(name)
        if held is not None and held[0] != owner and held[2] > now:
            return False
        self._claims[name] = (owner, now, now + timedelta(seconds=ttl_s))
        return True

    async def last_claimed(self, name: str) -> datetime | None:
        held = self._claims.get(name)
        return None if held is None else held[1]

    async def backlog(self) -> Backlog:
        running = [e.id for e in self._executions.values() if e.status == "running"]
        queued = held = 0
        oldest: datetime | None = None
        for execution_id in running:
            tasks = self._tasks.get(execution_id)
            if tasks is None:
                continue
            held += len(tasks.held)
            for key, finished in tasks.finished_keys.items():
                if finished or key in tasks.held:
                    continue
                queued += 1
                at = tasks.registered_at.get(key)
                if at is not None and (oldest is None or at < oldest):
                    oldest = at
        return Backlog(running=len(running), queued=queued, held=held, oldest_queued_at=oldest)

    # -- outputs

    async def add_output(self, execution_id: str, output: OutputObject) -> None:
        self._tasks.setdefault(execution_id, _Tasks()).outputs[output.path] = output

    async def outputs(self, execution_id: str) -> list[OutputObject]:
        tasks = self._tasks.get(execution_id)
        if tasks is None:
            return []
        return sorted(tasks.outputs.values(), key=lambda output: output.path)

    # -- webhooks

    async def enqueue_webhook(
        self, execution_id: str, *, tenant: str, url: str, payload: str
    ) -> bool:
        if execution_id in self._webhooks:
            return False
        now = self._clock.wall()
        self._webhooks[execution_id] = WebhookDelivery(
            execution_id=execution_id,
            tenant=tenant,
            url=url,
            payload=payload,
            created_at=now,
            next_at=now,
        )
        return True

    async def claim_webhooks(self, *, limit: int, lease_s: float) -> list[WebhookDelivery]:
        now = self._clock.wall()
        due = sorted(
            (d for d in self._webhooks.values() if d.status == "pending" and d.next_at <= now),
            key=lambda d: (d.next_at, d.execution_id),
        )[: max(limit, 0)]
        until = now + timedelta(seconds=lease_s)
        claimed = []
        for delivery in due:
            taken = msgspec.structs.replace(delivery, attempts=delivery.attempts + 1, next_at=until)
            self._webhooks[delivery.execution_id] = taken
            claimed.append(taken)
        return claimed

    async def record_webhook_attempt(
        self,
        execution_id: str,
        *,
        attempt: int,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        delivery = self._webhooks.get(execution_id)
        if delivery is None or delivery.status != "pending" or delivery.attempts != attempt:
            return False
        now = self._clock.wall()
        if delivered:
            changes: dict[str, object] = {
                "status": "delivered",
                "last_error": None,
                "finished_at": now,
            }
        elif retry_at is not None:
            changes = {"next_at": retry_at, "last_error": error}
        else:
            changes = {"status": "failed", "last_error": error, "finished_at": now}
        self._webhooks[execution_id] = msgspec.structs.replace(delivery, **changes)
        return True

    async def get_webhook(self, execution_id: str) -> WebhookDelivery | None:
        return self._webhooks.get(execution_id)

    # -- retention

    def _prunable(self, execution_id: str, ended_before: datetime) -> bool:
        """Ended before the cutoff, and a cancel (if it was one) settled."""
        execution = self._executions.get(execution_id)
        if execution is None or execution.status not in TERMINAL_STATUSES:
            return False
        if execution.finished_at is None or execution.finished_at >= ended_before:
            return False
        tasks = self._tasks.get(execution_id)
        return execution.status != "cancelled" or (
            tasks is not None and tasks.frozen_at is not None
        )

    def _prune_counts(self, execution_id: str) -> PruneCounts:
        tasks = self._tasks.get(execution_id)
        webhook = self._webhooks.get(execution_id)
        counts = PruneCounts(
            tasks=len(tasks.finished_keys) if tasks is not None else 0,
            part_outputs=sum(o.kind == "part" for o in tasks.outputs.values()) if tasks else 0,
            sessions=int(execution_id in self._sessions),
            webhooks=int(webhook is not None and webhook.status != "pending"),
        )
        return counts + PruneCounts(executions=1) if counts.rows else PruneCounts()

    async def prunable_executions(
        self, *, ended_before: datetime, after: str = "", limit: int = 100
    ) -> list[str]:
        found = (
            execution_id
            for execution_id in sorted(self._executions)
            if execution_id > after
            and self._prunable(execution_id, ended_before)
            and self._prune_counts(execution_id).rows
        )
        return list(itertools.islice(found, max(limit, 0)))

    async def prune_execution(
        self,
        execution_id: str,
        *,
        ended_before: datetime,
        batch: int = PRUNE_BATCH,
        dry_run: bool = False,
    ) -> PruneCounts:
        check_prune_batch(batch)
        if not self._prunable(execution_id, ended_before):
            return PruneCounts()
        counts = self._prune_counts(execution_id)
        if not dry_run:
            await self._prune_now(execution_id)
        return counts

    async def _prune_now(self, execution_id: str) -> None:
        """Delete what retention deletes of the execution, which has ended."""
        await self.freeze(execution_id)  # a late finish must not count again
        tasks = self._tasks.get(execution_id)
        if tasks is not None:
            tasks.pruned += len(tasks.finished_keys)
            tasks.finished_keys.clear()
            tasks.payloads.clear()
            tasks.registered_at.clear()
            tasks.leased_until.clear()
            tasks.held.clear()
            tasks.outputs = {p: o for p, o in tasks.outputs.items() if o.kind != "part"}
        self._sessions.pop(execution_id, None)
        webhook = self._webhooks.get(execution_id)
        if webhook is not None and webhook.status != "pending":
            del self._webhooks[execution_id]

    async def prune_claims(
        self, *, expired_before: datetime, batch: int = PRUNE_BATCH, dry_run: bool = False
    ) -> int:
        check_prune_batch(batch)
        expired = [name for name, (_, _, until) in self._claims.items() if until < expired_before]
        if not dry_run:
            for name in expired:
                del self._claims[name]
        return len(expired)

    # -- secrets and login sessions (never journaled: see backends/sqlite/state.py)

    async def put_secret(
        self, tenant: str, name: str, value: str, *, max_secrets: int = 0
    ) -> SecretInfo | None:
        key = (tenant, name)
        held = sum(1 for t, _ in self._secrets if t == tenant)
        if key not in self._secrets and 0 < max_secrets <= held:
            return None
        now = self._clock.wall()
        self._secrets[key] = (value, now)
        return SecretInfo(name=name, updated_at=now)

    async def list_secrets(self, tenant: str) -> list[SecretInfo]:
        return [
            SecretInfo(name=name, updated_at=at)
            for (t, name), (_, at) in sorted(self._secrets.items())
            if t == tenant
        ]

    async def delete_secret(self, tenant: str, name: str) -> bool:
        return self._secrets.pop((tenant, name), None) is not None

    async def get_secrets(self, tenant: str, names: Collection[str]) -> dict[str, str]:
        return {
            name: self._secrets[(tenant, name)][0]
            for name in names
            if (tenant, name) in self._secrets
        }

    async def put_session(self, execution_id: str, session: LoginSession) -> bool:
        stored = self._sessions.get(execution_id)
        if stored is not None and stored.generation >= session.generation:
            return False
        self._sessions[execution_id] = session
        return True

    async def get_session(self, execution_id: str) -> LoginSession | None:
        return self._sessions.get(execution_id)


def _keep_warning_examples(tasks: _Tasks, result: TaskResult) -> None:
    for key, count in result.warning_fields.items():
        kind, _, name = key.partition("|")
        counter, urls = tasks.warning_examples.setdefault((kind, result.phase, name), ([0], []))
        counter[0] += count
        if len(urls) < MAX_WARNING_EXAMPLES and result.url not in urls:
            urls.append(result.url)
