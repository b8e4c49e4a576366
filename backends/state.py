"""The StateStore ports: the control plane's record, in nine roles.

``WorkflowStore`` (workflows and their versions), ``ExecutionStore`` (executions and their
status), ``KeyStore`` (API keys), ``TaskLedger`` (the task counters that decide completion,
failures, leases), ``OutputStore`` (the manifest of output objects), ``WebhookOutbox``
(the webhook call each ended execution owes, until it is delivered or given up),
``SecretStore`` (tenants' secrets and executions' login sessions), ``ScheduleStore``
(schedules and the history of their fires) and ``RetentionStore`` (deleting what ended
executions no longer need). ``StateStore`` is all nine, which is what
each backend implements; code takes the narrowest role it needs, so a backend for one role
alone (a task ledger elsewhere, say) fits where only that role is used.

Completion rests on two idempotent operations. ``add_tasks`` registers the keys of tasks
about to be published (a key at most once); ``finish_tasks`` records their outcome, and only
the first finish of a key counts. Queue redeliveries therefore cannot corrupt the counters,
and an execution is complete exactly when every registered key has finished. Register
children before finishing their parent, so ``finished == published`` cannot happen while
work is still being discovered.

Fair sharing rests on a window per execution: ``register_tasks`` with ``window`` > 0 lets
at most that many of an execution's tasks be in the queue unfinished at once; the rest are
registered (they count as published, so completion waits for them) but held, and
``release_tasks`` hands them out, oldest first, as finishes make room. One execution with a
million pages queued therefore sits in the shared queue with ``window`` tasks, beside every
other execution's.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from backends.errors import InvalidInputError

ExecutionStatus = Literal["pending", "running", "completed", "cancelled", "failed"]
TERMINAL_STATUSES: frozenset[ExecutionStatus] = frozenset({"completed", "cancelled", "failed"})

TaskOutcome = Literal["succeeded", "failed", "filtered"]
OutputKind = Literal["part", "export", "summary"]
WebhookStatus = Literal["pending", "delivered", "failed"]


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the Structs the store hands out; they cross the API boundary as JSON."""


class StoredWorkflow(_Record, frozen=True):
    """One version of a workflow as it was put: its source (YAML or JSON, kept for users to
    read back) and its validated spec as JSON (what executions run)."""

    tenant: str
    name: str
    version: int
    source_text: str
    spec_json: str
    created_at: datetime


class Execution(_Record, frozen=True):
    """One run of one workflow version. ``error`` says why a failed execution could not go
    on (page failures do not fail an execution)."""

    id: str
    workflow: str
    workflow_version: int
    created_at: datetime
    tenant: str = "default"
    status: ExecutionStatus = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: dict[str, Any] = {}
    error: str | None = None


class TaskResult(_Record, frozen=True):
    """How one task ended, as the worker reports it."""

    key: str
    url: str
    phase: str
    depth: int
    outcome: TaskOutcome
    marker: str | None = None
    attempt: int = 0
    error_class: str | None = None
    error_message: str | None = None
    records: int = 0
    warnings: dict[str, int] = {}
    funnel: dict[str, int] = {}  # "stage|phase|marker" -> count, see FUNNEL_STAGES
    # The warnings a field is to blame for, by "kind|field"; the store keeps a few example
    # URLs of each (see WarningExample).
    warning_fields: dict[str, int] = {}


# The crawl funnel, per target phase and marker: links the pages emitted (discovered), those
# the scope, depth and transition rules admitted (in_scope), of those the ones another
# marker claimed first on the same page (duplicate_marker, under link_claims: first;
# workflows/claims.py), those not seen before and published (new), then the pages fetched
# and the records extracted from them. In a recrawl
# (worker/recrawl.py) the pages the previous execution had a record of are also counted as
# changed or unchanged (an unchanged one repeats its record: it is not extracted).
FUNNEL_STAGES = (
    "discovered",
    "in_scope",
    "duplicate_marker",
    "new",
    "fetched",
    "extracted",
    "changed",
    "unchanged",
)


def funnel_key(stage: str, phase: str, marker: str | None) -> str:
    return f"{stage}|{phase}|{marker or ''}"


class Progress(_Record, frozen=True):
    """Counters of one execution. ``by_phase`` and ``by_marker`` map a phase or marker (no
    marker: "") to outcome to count; ``failures_by_class`` counts failed tasks by error
    class."""

    published: int = 0
    finished: int = 0
    by_outcome: dict[str, int] = {}
    by_phase: dict[str, dict[str, int]] = {}
    by_marker: dict[str, dict[str, int]] = {}
    failures_by_class: dict[str, int] = {}
    warnings: dict[str, int] = {}
    records: int = 0
    funnel: dict[str, dict[str, int]] = {}  # "phase|marker" -> stage -> count

    def pages(self) -> dict[str, int]:
        """Pages published, finished, and finished by outcome, as every report shows them."""
        counts = {"published": self.published, "finished": self.finished}
        counts.update((k, self.by_outcome.get(k, 0)) for k in ("succeeded", "failed", "filtered"))
        return counts

    @property
    def complete(self) -> bool:
        """Every published task has finished, and there was at least one. An execution
        that published nothing is for the runtime to settle."""
        return self.published > 0 and self.finished >= self.published


class Registered(_Record, frozen=True):
    """What ``register_tasks`` did with a batch of keys, each key once, in batch order."""

    publish: list[str] = []  # registered and unfinished: publish these now
    held: list[str] = []  # newly registered, held until the window has room


class Failure(_Record, frozen=True):
    """One task that failed for good."""

    key: str
    url: str
    phase: str
    error_class: str
    message: str
    attempt: int
    at: datetime


# Example URLs kept per (execution, warning kind, phase, field): enough to find the page.
MAX_WARNING_EXAMPLES = 3


class WarningExample(_Record, frozen=True):
    """How often one field of one phase gave one kind of warning, and the first few URLs."""

    kind: str
    phase: str
    field: str
    count: int
    urls: list[str] = []


class Activity(_Record, frozen=True):
    """What tells a stalled execution from a slow one: when a task last finished, when a
    worker last reported holding one (a lease), and when the counters were frozen."""

    last_finished_at: datetime | None = None
    last_leased_at: datetime | None = None
    frozen_at: datetime | None = None


class Backlog(_Record, frozen=True):
    """The work waiting across every running execution, as the ledger knows it exactly
    (what the autoscaler and the dashboards read: orchestrator/metrics.py). ``queued``:
    tasks registered, released into the queue and not finished (in Pub/Sub, or in a
    worker's hands); ``held``: tasks registered but held back by their execution's queue
    window (not in the queue yet); ``oldest_queued_at``: when the oldest queued task was
    registered, released or last re-published by the reconciler (None when none is
    queued)."""

    running: int = 0
    queued: int = 0
    held: int = 0
    oldest_queued_at: datetime | None = None


class OutputObject(_Record, frozen=True):
    """One object an execution wrote to the BlobStore."""

    path: str
    size_bytes: int
    records: int
    kind: OutputKind


# An API key's public id: this many hex digits of its hash, enough to name it, never to use
# or rebuild it.
KEY_ID_LENGTH = 12

KeyRefusal = Literal["unknown", "revoked", "expired"]


def key_id_of(key_hash: str) -> str:
    """The public id of the key with this hash."""
    return key_hash[:KEY_ID_LENGTH]


class ApiKey(_Record, frozen=True):
    """An API key as the store keeps it: never the key nor its full hash, only a public
    ``id``, the tenant it acts for, whether it may manage keys, and its lifetime."""

    id: str
    tenant: str
    created_at: datetime
    admin: bool = False
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyCheck(_Record, frozen=True):
    """A key's hash looked up: the key when it may be used, else why not."""

    key: ApiKey | None = None
    refused: KeyRefusal | None = None


class WebhookDelivery(_Record, frozen=True):
    """The webhook call an ended execution owes: where it goes, the JSON body (fixed when it
    was enqueued; each attempt signs it anew), how many attempts were made and when the
    next one is due. ``status`` ends as delivered (a 2xx) or failed (attempts used up, or
    the URL refused), with ``finished_at`` and, when it failed, ``last_error``."""

    execution_id: str
    tenant: str
    url: str
    payload: str
    created_at: datetime
    next_at: datetime
    status: WebhookStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    finished_at: datetime | None = None


class SecretInfo(_Record, frozen=True):
    """A tenant's secret as it may be shown: its name and when it was last set, never its
    value."""

    name: str
    updated_at: datetime


class SessionCookie(_Record, frozen=True):
    """One cookie a login ended with, as a browser keeps it: sent to ``domain`` (that host
    only when ``host_only``, else it and every host under it), under ``path``, and only
    over https when ``secure``."""

    name: str
    value: str
    domain: str
    path: str = "/"
    host_only: bool = True
    secure: bool = False


class LoginSession(_Record, frozen=True):
    """What an execution's login left: its cookies, or why it failed (``error``). Each new
    login of the execution (a re-login after the site logged the crawl out) has the next
    ``generation``."""

    cookies: list[SessionCookie] = []
    error: str | None = None
    generation: int = 1
    created_at: datetime | None = None


# Schedules (docs/schedules.md): what one fire of a schedule came to, and its policies.
ScheduleOutcome = Literal["started", "skipped_overlap", "missed", "failed_to_start"]
SCHEDULE_OUTCOMES: tuple[ScheduleOutcome, ...] = (
    "started",
    "skipped_overlap",
    "missed",
    "failed_to_start",
)
OverlapPolicy = Literal["skip", "allow"]
MissedPolicy = Literal["skip", "run_once"]
SCHEDULE_HISTORY = 20  # the fires each schedule keeps, newest first


class Schedule(_Record, frozen=True):
    """A tenant's standing order to start executions of ``workflow`` at the times ``cron``
    (five fields) names in ``timezone`` (an IANA name). ``workflow_version`` None runs the
    latest version at each fire. ``next_run_at`` is None while it is paused (``enabled``
    false). ``revision`` goes up with every edit; ``claim`` with every time a scheduler
    took it to fire (see ``ScheduleStore.claim_due_schedules``). ``counts`` is fires by
    outcome since it was created."""

    id: str
    tenant: str
    workflow: str
    cron: str
    timezone: str
    created_at: datetime
    updated_at: datetime
    workflow_version: int | None = None
    overrides: list[str] = []
    webhook: str | None = None
    enabled: bool = True
    overlap: OverlapPolicy = "skip"
    missed: MissedPolicy = "skip"
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_outcome: ScheduleOutcome | None = None
    last_execution_id: str | None = None
    counts: dict[str, int] = {}
    revision: int = 1
    claim: int = 0


class ScheduleFire(_Record, frozen=True):
    """One entry of a schedule's history: the fire due at ``scheduled_for``, handled at
    ``at``, and what came of it. Fires missed while no scheduler ran are one entry whose
    ``count`` says how many (``scheduled_for``: the first of them)."""

    scheduled_for: datetime
    at: datetime
    outcome: ScheduleOutcome
    execution_id: str | None = None
    reason: str | None = None
    count: int = 1


class PruneCounts(_Record, frozen=True):
    """What a prune deleted (a dry run: would delete), by kind: the ended executions it
    touched, their task rows, part-file entries of the output manifest, login sessions and
    settled webhook calls, and claims that had long expired (see ``RetentionStore``)."""

    executions: int = 0
    tasks: int = 0
    part_outputs: int = 0
    sessions: int = 0
    webhooks: int = 0
    claims: int = 0

    def __add__(self, other: PruneCounts) -> PruneCounts:
        return PruneCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in self.__struct_fields__}
        )

    @property
    def rows(self) -> int:
        """Every row counted, executions aside (they are kept)."""
        return self.tasks + self.part_outputs + self.sessions + self.webhooks + self.claims


# Rows one prune statement deletes at most: each is a short transaction holding few locks.
PRUNE_BATCH = 2000


def check_prune_batch(batch: int) -> None:
    """InvalidInputError unless ``batch`` (rows a prune statement deletes) is at least 1."""
    if batch <= 0:
        raise InvalidInputError(f"a prune batch must be at least 1 row, not {batch}")


class _Closable(abc.ABC):  # noqa: B024 - a mixin of the role ports, no abstract method
    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class WorkflowStore(_Closable):
    """Workflows and their versions, per tenant."""

    @abc.abstractmethod
    async def put_workflow(self, tenant: str, name: str, source_text: str, spec_json: str) -> int:
        """Store a new version of workflow ``name`` and return its number (1, 2, ...).
        Every put makes a version, even of unchanged text."""

    @abc.abstractmethod
    async def get_workflow(
        self, tenant: str, name: str, version: int | None = None
    ) -> StoredWorkflow | None:
        """One version (default: the latest), or None."""

    @abc.abstractmethod
    async def list_workflows(self, tenant: str) -> list[StoredWorkflow]:
        """The latest version of each of the tenant's workflows, by name."""

    @abc.abstractmethod
    async def delete_workflow(self, tenant: str, name: str) -> bool:
        """Delete every version; False if there was none. Executions are kept."""


class ExecutionStore(_Closable):
    """Executions and their status."""

    @abc.abstractmethod
    async def create_execution(self, execution: Execution) -> None:
        """Record a new execution; InvalidInputError if its id exists."""

    @abc.abstractmethod
    async def get_execution(self, execution_id: str) -> Execution | None:
        """The execution, or None."""

    @abc.abstractmethod
    async def list_executions(
        self, tenant: str, *, workflow: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        """The tenant's executions, newest first."""

    @abc.abstractmethod
    async def transition(
        self,
        execution_id: str,
        to_status: ExecutionStatus,
        *,
        from_statuses: Collection[ExecutionStatus],
        error: str | None = None,
    ) -> bool:
        """Compare and set: move to ``to_status`` only from one of ``from_statuses``, so of
        two workers seeing the last task finish, one completes the execution. Sets
        ``started_at`` on entering running, ``finished_at`` on entering a terminal status.
        False if the status did not match or the execution does not exist."""

    @abc.abstractmethod
    async def count_active_executions(self, tenant: str) -> int:
        """How many of the tenant's executions are pending or running (the API caps it)."""

    @abc.abstractmethod
    async def create_execution_capped(self, execution: Execution, max_active: int) -> bool:
        """Record a new execution only while its tenant has fewer than ``max_active``
        pending or running ones, in one atomic step (concurrent calls cannot overshoot);
        False, and nothing recorded, when it has that many. InvalidInputError if its id
        exists."""


class KeyStore(_Closable):
    """The orchestrator's API keys, by hash."""

    @abc.abstractmethod
    async def create_api_key(
        self,
        key_hash: str,
        tenant: str,
        *,
        admin: bool = False,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        """Record a key by its hash (the key itself is never stored) and return it, its
        public id being ``key_id_of(key_hash)``; InvalidInputError if the hash or the id
        exists."""

    async def put_api_key(self, key_hash: str, tenant: str) -> None:
        """Record a tenant's key that never expires (``create_api_key`` with defaults)."""
        await self.create_api_key(key_hash, tenant)

    @abc.abstractmethod
    async def check_api_key(self, key_hash: str) -> KeyCheck:
        """The key with this hash if it may be used now; else why not: unknown, revoked, or
        expired (its ``expires_at`` is not after now)."""

    async def tenant_for_key(self, key_hash: str) -> str | None:
        """The tenant a usable key's hash belongs to; None for an unknown, revoked or
        expired key (``check_api_key`` says which)."""
        check = await self.check_api_key(key_hash)
        return None if check.key is None else check.key.tenant

    @abc.abstractmethod
    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (or the tenant's), revoked and expired ones included, oldest first."""

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke the key with this public id at once and return it (revoking it again
        keeps the first revocation time); None if there is no such key."""


class TaskLedger(_Closable):
    """The tasks of executions: registration (and the queue window), results and the
    counters that decide completion, failures, warnings; and what the reconciler, the stall
    check and a cancel need (leases, reclaiming, freezing, claims)."""

    async def add_tasks(
        self,
        execution_id: str,
        keys: Sequence[str],
        *,
        max_total: int = 0,
        payloads: Sequence[str] | None = None,
    ) -> list[str]:
        """Register the keys of tasks about to be published and return the ones to publish:
        each key, once, in order, that is registered and unfinished after the call (new, or
        registered by an earlier attempt whose publish failed). Finished keys are left out.
        With ``max_total`` > 0 no new key is registered once ``published`` has reached it,
        which is how ``max_pages`` holds across workers. ``payloads`` (one per key, the
        encoded task) are kept with newly registered keys so ``reclaim_tasks`` can publish a
        lost task again; each key's registration time is kept too. Once the execution's
        counters are frozen (``freeze``) nothing is registered and [] is returned.
        (``register_tasks`` with no window.)"""
        registered = await self.register_tasks(
            execution_id, keys, max_total=max_total, payloads=payloads
        )
        return registered.publish

    @abc.abstractmethod
    async def register_tasks(
        self,
        execution_id: str,
        keys: Sequence[str],
        *,
        max_total: int = 0,
        payloads: Sequence[str] | None = None,
        window: int = 0,
    ) -> Registered:
        """``add_tasks``, under a window: with ``window`` > 0, new keys beyond what keeps the
        execution's queued tasks (released, unfinished) at ``window`` are registered but
        held, and are not to be published until ``release_tasks`` hands them out. A key
        without a payload is never held (it could not be published later). Keys registered
        earlier and still held are in neither list."""

    @abc.abstractmethod
    async def release_tasks(self, execution_id: str, *, window: int) -> list[str]:
        """Release held tasks, oldest registration first (one registration's keys in no
        particular order), while fewer than ``window`` of the
        execution's tasks are queued, and return their payloads to publish. Each counts as
        registered now (for ``reclaim_tasks``). [] when nothing is held, there is no room,
        or the counters are frozen."""

    @abc.abstractmethod
    async def remove_tasks(self, execution_id: str, keys: Sequence[str]) -> int:
        """Unregister keys that have not finished (their publish failed for good); return
        how many were removed. Finished keys stay."""

    @abc.abstractmethod
    async def finish_tasks(self, execution_id: str, results: Sequence[TaskResult]) -> int:
        """Record outcomes; return how many counted. Only the first finish of a key counts,
        so redelivered duplicates change nothing. A key never added counts as added too, so
        ``finished`` never exceeds ``published``. Nothing counts once the execution's
        counters are frozen (``freeze``)."""

    @abc.abstractmethod
    async def progress(self, execution_id: str) -> Progress:
        """The counters (all zero for an unknown execution)."""

    @abc.abstractmethod
    async def failures(self, execution_id: str, *, limit: int = 100) -> list[Failure]:
        """Tasks that failed for good, newest first."""

    async def iter_failures(self, execution_id: str) -> AsyncIterator[Failure]:
        """Every task that failed for good, oldest first; adapters override this to read
        in pages rather than all at once."""
        for failure in reversed(await self.failures(execution_id, limit=1 << 62)):
            yield failure

    async def warning_examples(self, execution_id: str) -> list[WarningExample]:
        """Warnings by kind, phase and field, with up to MAX_WARNING_EXAMPLES URLs each
        (first finish of a task counts, as for the counters), sorted by kind, phase, field.
        A store that keeps none returns []."""
        return []

    # reconciling, stalls and cancels (see worker/reconcile.py)

    @abc.abstractmethod
    async def lease_tasks(self, execution_id: str, keys: Sequence[str], until: datetime) -> int:
        """A worker holds these tasks until ``until``: their unfinished keys are leased, and
        the execution's ``last_leased_at`` is now. Return how many keys were leased."""

    @abc.abstractmethod
    async def live_leases(self, execution_id: str) -> int:
        """How many unfinished tasks of the execution are leased past now."""

    @abc.abstractmethod
    async def reclaim_tasks(
        self, execution_id: str, *, registered_before: datetime, limit: int = 1000
    ) -> list[str]:
        """The payloads of up to ``limit`` unfinished tasks registered (or last reclaimed)
        before ``registered_before`` and not leased past now, oldest first; each counts as
        registered now, so the next reclaim leaves it alone for as long again. Tasks
        registered without a payload, and held ones, are left out."""

    @abc.abstractmethod
    async def activity(self, execution_id: str) -> Activity:
        """When a task of the execution last finished and was last leased, and when its
        counters were frozen (all None for an unknown execution)."""

    @abc.abstractmethod
    async def freeze(self, execution_id: str) -> bool:
        """Stop the counters of an execution that has ended: from now on ``add_tasks`` and
        ``finish_tasks`` change nothing for it. True if this call froze them (False: not
        ended, unknown, or frozen already)."""

    @abc.abstractmethod
    async def sweep_candidates(self, *, stalled_before: datetime, limit: int = 100) -> list[str]:
        """Executions a sweep should look at: running ones with unfinished tasks and no task
        finished since ``stalled_before`` (nor started since), and cancelled ones whose
        counters are not frozen yet."""

    @abc.abstractmethod
    async def claim(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take (or renew) the named claim for ``ttl_s`` seconds; False while another owner
        holds it. How workers take turns at a sweep."""

    @abc.abstractmethod
    async def last_claimed(self, name: str) -> datetime | None:
        """When the named claim was last taken or renewed, or None."""

    @abc.abstractmethod
    async def backlog(self) -> Backlog:
        """The backlog of the executions whose status is running (``Backlog``): how many
        there are, their queued and held tasks, and when the oldest queued one was
        registered. A cheap read, made every few seconds by one orchestrator."""


class OutputStore(_Closable):
    """The manifest of an execution's output objects."""

    @abc.abstractmethod
    async def add_output(self, execution_id: str, output: OutputObject) -> None:
        """Add an object to the manifest; one entry per path, the last add wins."""

    @abc.abstractmethod
    async def outputs(self, execution_id: str) -> list[OutputObject]:
        """The manifest, by path."""


class WebhookOutbox(_Closable):
    """Webhook calls owed by ended executions, one per execution, until delivered or given
    up (see worker/webhooks.py). Claims keep two workers from sending one call at once."""

    @abc.abstractmethod
    async def enqueue_webhook(
        self, execution_id: str, *, tenant: str, url: str, payload: str
    ) -> bool:
        """Owe a call to ``url`` with body ``payload`` for ``execution_id``, due now; True if
        this call enqueued it. Idempotent per execution: once one is enqueued, later calls
        change nothing and return False."""

    @abc.abstractmethod
    async def claim_webhooks(self, *, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """Take up to ``limit`` pending calls that are due (``next_at`` not after now),
        earliest due first, for an attempt: each one's ``attempts`` goes up by one (the
        attempt about to be made) and its ``next_at`` moves ``lease_s`` ahead, so no other
        claim takes it meanwhile; should the claimer die, it is due again after that. The
        calls as claimed."""

    @abc.abstractmethod
    async def record_webhook_attempt(
        self,
        execution_id: str,
        *,
        attempt: int,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """The outcome of attempt number ``attempt``: delivered; else due again at
        ``retry_at``, or failed for good when it is None (``error`` says why). Only while
        the call is pending and that attempt is its last claimed one (a claimer whose lease
        lapsed changes nothing); True if recorded."""

    @abc.abstractmethod
    async def get_webhook(self, execution_id: str) -> WebhookDelivery | None:
        """The execution's webhook call, or None if it owes none."""


class SecretStore(_Closable):
    """Credentials: each tenant's named secrets (what ``${secret:NAME}`` in a workflow
    resolves to) and each execution's login session. Values leave the store only through
    ``get_secrets`` and ``get_session``, for the execution that uses them; an adapter that
    can encrypt them at rest does."""

    @abc.abstractmethod
    async def put_secret(
        self, tenant: str, name: str, value: str, *, max_secrets: int = 0
    ) -> SecretInfo | None:
        """Set (create or replace) the tenant's secret ``name``. With ``max_secrets`` > 0 a
        new name is refused (None, nothing stored) once the tenant has that many, checked
        atomically with the insert; replacing an existing one is always allowed."""

    @abc.abstractmethod
    async def list_secrets(self, tenant: str) -> list[SecretInfo]:
        """The tenant's secrets by name: names and times only."""

    @abc.abstractmethod
    async def delete_secret(self, tenant: str, name: str) -> bool:
        """Delete the tenant's secret; False if there was none."""

    @abc.abstractmethod
    async def get_secrets(self, tenant: str, names: Collection[str]) -> dict[str, str]:
        """The values of those of ``names`` the tenant has (the others are left out)."""

    @abc.abstractmethod
    async def put_session(self, execution_id: str, session: LoginSession) -> bool:
        """Store the execution's login session unless one of the same or a later
        generation is stored already (two workers logging in at once: the first wins);
        True if this one was stored."""

    @abc.abstractmethod
    async def get_session(self, execution_id: str) -> LoginSession | None:
        """The execution's latest login session, or None before its first login."""


class ScheduleStore(_Closable):
    """Schedules and the short history of their fires. Several orchestrator instances run
    a scheduler each: ``claim_due_schedules`` hands a due schedule to one of them at a time,
    and ``record_fires`` takes the outcome only from the claim that holds it."""

    @abc.abstractmethod
    async def create_schedule(self, schedule: Schedule, *, max_per_tenant: int) -> bool:
        """Record a new schedule unless its tenant has ``max_per_tenant`` already, checked
        atomically with the insert (False, nothing recorded). InvalidInputError if its id
        exists."""

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""

    @abc.abstractmethod
    async def list_schedules(self, tenant: str) -> list[Schedule]:
        """The tenant's schedules, oldest first."""

    @abc.abstractmethod
    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        """Store the edited fields of ``schedule`` (workflow, version, cron, time zone,
        overrides, webhook, enabled, policies, next_run_at) over the stored one of its id,
        only if that one is still at ``schedule.revision``; the stored schedule, its
        revision one up and ``updated_at`` now. None if there is no such schedule;
        InvalidInputError (error_class ``conflict``) if it was edited meanwhile."""

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule and its history; False if there was none. Its executions
        are kept."""

    @abc.abstractmethod
    async def claim_due_schedules(self, *, limit: int, lease_s: float) -> list[Schedule]:
        """Take up to ``limit`` enabled schedules whose ``next_run_at`` is not after now
        and that no claim holds, earliest due first: each one's ``claim`` goes up by one
        and it is held for ``lease_s`` (no other claim takes it meanwhile; should its
        claimer die, it is due again after that). The schedules as claimed."""

    @abc.abstractmethod
    async def record_fires(
        self,
        schedule_id: str,
        *,
        claim: int,
        revision: int,
        fires: Sequence[ScheduleFire],
        next_run_at: datetime | None,
    ) -> bool:
        """What claim number ``claim`` came to: ``fires`` join the history (only the newest
        SCHEDULE_HISTORY are kept) and the counts; the last one sets ``last_run_at`` (its
        ``at``) and ``last_outcome``, the last with an execution ``last_execution_id``;
        ``next_run_at`` is stored only while the schedule is at ``revision`` (an edit since
        the claim computed its own); the claim is released. Only while ``claim`` is the
        schedule's last claim; True if recorded."""

    @abc.abstractmethod
    async def schedule_fires(
        self, schedule_id: str, *, limit: int = SCHEDULE_HISTORY
    ) -> list[ScheduleFire]:
        """The schedule's history, newest first."""


class RetentionStore(_Closable):
    """Row retention (docs/operations.md, "Retention"): what an execution that ended long
    ago no longer needs. Its task rows (one per URL, the bulk of the store: they make a
    finish count once and let the reconciler publish a lost task again), the part-file
    entries of its output manifest (the bucket deletes part files after 30 days), its login
    session (cookies) and its webhook call once delivered or given up. Kept: the execution,
    its counters and counts, failures, warning examples and export entries, which every
    report and the export pointers read. Besides, claims that expired long ago.

    An execution is pruned only once it has ended before the cutoff, and a cancelled one
    only once its cancel has settled (counters frozen, export written). Pruning freezes the
    counters of the others first, so a task delivered again after its row is gone cannot
    count a second time. Deletes go in statements of at most ``batch`` rows that skip rows
    another pruner holds: several processes may prune at once."""

    @abc.abstractmethod
    async def prunable_executions(
        self, *, ended_before: datetime, after: str = "", limit: int = 100
    ) -> list[str]:
        """Ids above ``after``, in id order, of up to ``limit`` executions that ended before
        ``ended_before`` and still have rows to prune."""

    @abc.abstractmethod
    async def prune_execution(
        self,
        execution_id: str,
        *,
        ended_before: datetime,
        batch: int = PRUNE_BATCH,
        dry_run: bool = False,
    ) -> PruneCounts:
        """Delete what the execution no longer needs (``dry_run``: count it, change nothing);
        ``executions`` is 1 when there was something, else the counts are all 0 (nothing
        left, or the execution is not prunable: running, ended since ``ended_before``, a
        cancel not settled, unknown)."""

    @abc.abstractmethod
    async def prune_claims(
        self, *, expired_before: datetime, batch: int = PRUNE_BATCH, dry_run: bool = False
    ) -> int:
        """Delete the claims whose expiry is before ``expired_before`` (``dry_run``: count
        them); how many."""


class StateStore(
    WorkflowStore,
    ExecutionStore,
    KeyStore,
    TaskLedger,
    OutputStore,
    WebhookOutbox,
    SecretStore,
    ScheduleStore,
    RetentionStore,
):
    """Every role at once: the control plane's record as one backend (Postgres, memory or
    SQLite) keeps it. Code that needs one role takes that role's port."""


def nest_funnel(counts: Iterable[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """``stage|phase|marker`` counts as ``{"phase|marker": {stage: count}}``."""
    nested: dict[str, dict[str, int]] = {}
    for key, count in counts:
        stage, _, row = key.partition("|")
        if count:
            nested.setdefault(row, {})[stage] = nested.get(row, {}).get(stage, 0) + count
    return nested
