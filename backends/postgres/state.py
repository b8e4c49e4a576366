"""PostgresStateStore: the StateStore of distributed mode, in Postgres through PgBouncer.

Every operation is one statement, or one short transaction (see ``tasks``), so it works in
PgBouncer's transaction pooling mode and its cost does not grow with a batch's size in round
trips. Timestamps come from the injected clock, as in the memory adapter; order that matters
(failures newest first) comes from sequence ids, not from clocks.

Operations that can run twice without harm (reads, the idempotent task operations, the
output manifest) are retried across a dropped connection; the others are retried only when
nothing reached the server (see ``PostgresPool``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.postgres import (
    backlog,
    reconcile,
    retention,
    secrets,
    tasks,
    warning_examples,
    webhooks,
)
from backends.postgres.counters import DEFAULT_COUNTER_SHARDS, CounterTarget
from backends.postgres.pool import PostgresPool
from backends.postgres.schedules import PostgresSchedules
from backends.secret_cipher import SecretCipher
from backends.state import (
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
    key_id_of,
)

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

_WORKFLOW_COLUMNS = "tenant, name, version, source_text, spec_json, created_at"
_EXECUTION_COLUMNS = (
    "id, tenant, workflow, workflow_version, status, created_at, started_at, finished_at,"
    " params::text AS params, error"
)

# Bumping workflow_names.last_version and inserting the version in one statement: the row
# lock on the name serializes concurrent puts, and a version number is never reused.
_PUT_WORKFLOW = f"""
WITH named AS (
    INSERT INTO workflow_names AS w (tenant, name, last_version) VALUES ($1, $2, 1)
    ON CONFLICT (tenant, name) DO UPDATE SET last_version = w.last_version + 1
    RETURNING last_version
)
INSERT INTO workflow_versions ({_WORKFLOW_COLUMNS})
SELECT $1, $2, last_version, $3, $4, $5 FROM named
RETURNING version
"""

_TRANSITION = """
UPDATE executions SET
    status = $2,
    started_at = CASE WHEN $4::bool THEN coalesce(started_at, $6) ELSE started_at END,
    finished_at = CASE WHEN $5::bool THEN $6 ELSE finished_at END,
    error = coalesce($7, error)
WHERE id = $1 AND status = ANY($3::text[])
RETURNING 1
"""

_INSERT_EXECUTION = (
    "INSERT INTO executions (id, tenant, workflow, workflow_version, status, created_at,"
    " started_at, finished_at, params, error)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)"
    " ON CONFLICT (id) DO NOTHING RETURNING 1"
)
_COUNT_ACTIVE = (
    "SELECT count(*) FROM executions WHERE tenant = $1 AND status IN ('pending', 'running')"
)
# A transaction-scoped advisory lock per tenant (it works through PgBouncer's transaction
# pooling, unlike a session lock), keyed by a hash of the tenant's name.
_LOCK_TENANT_STARTS = "SELECT pg_advisory_xact_lock(hashtextextended('trawl-starts:' || $1, 0))"
_KEY_COLUMNS = "id, tenant, created_at, admin, expires_at, revoked_at"

_json = msgspec.json.Encoder()


class PostgresStateStore(PostgresSchedules, StateStore):
    """Workflows, executions, task counters, failures and outputs in Postgres (schedules:
    ``PostgresSchedules``)."""

    def __init__(
        self,
        pool: PostgresPool,
        *,
        clock: Clock | None = None,
        cipher: SecretCipher | None = None,
        counter_shards: int = DEFAULT_COUNTER_SHARDS,
        counter_shard: int | None = None,
    ) -> None:
        self.pool = pool
        self._clock = clock or SystemClock()
        self._cipher = cipher  # seals secrets and sessions at rest; None: stored plainly
        # Where this store's task counts add up: one shard of each execution's counters,
        # picked at random unless given (1: the execution's one row; backends/postgres/
        # counters.py).
        self.counters = CounterTarget.pick(counter_shards, counter_shard)

    @classmethod
    async def from_url(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        clock: Clock | None = None,
        retry_deadline_s: float = 10.0,
        cipher: SecretCipher | None = None,
        counter_shards: int = DEFAULT_COUNTER_SHARDS,
        counter_shard: int | None = None,
    ) -> PostgresStateStore:
        """Connect to ``dsn`` (normally PgBouncer's address); RetryableError naming the
        host and port if it does not answer within ``retry_deadline_s``. ``cipher`` seals
        secrets and login sessions (``backends.secret_cipher``); ``counter_shards`` is
        TRAWL_COUNTER_SHARDS, ``counter_shard`` this store's among them (default: random)."""
        target = CounterTarget.pick(counter_shards, counter_shard)  # bad values fail first
        pool = await PostgresPool.connect(
            dsn, min_size=min_size, max_size=max_size, retry_deadline_s=retry_deadline_s
        )
        return cls(
            pool,
            clock=clock,
            cipher=cipher,
            counter_shards=counter_shards,
            counter_shard=target.shard,
        )

    async def close(self) -> None:
        await self.pool.close()

    # -- workflows

    async def put_workflow(self, tenant: str, name: str, source_text: str, spec_json: str) -> int:
        now = self._clock.wall()

        async def op(conn: Connection) -> int:
            version: int = await conn.fetchval(
                _PUT_WORKFLOW, tenant, name, source_text, spec_json, now
            )
            return version

        return await self.pool.run(op, idempotent=False)

    async def get_workflow(
        self, tenant: str, name: str, version: int | None = None
    ) -> StoredWorkflow | None:
        query = (
            f"SELECT {_WORKFLOW_COLUMNS} FROM workflow_versions"
            " WHERE tenant = $1 AND name = $2 AND ($3::int IS NULL OR version = $3)"
            " ORDER BY version DESC LIMIT 1"
        )
        row = await self._fetchrow(query, tenant, name, version)
        return None if row is None else StoredWorkflow(**row)

    async def list_workflows(self, tenant: str) -> list[StoredWorkflow]:
        query = (
            f"SELECT DISTINCT ON (name) {_WORKFLOW_COLUMNS} FROM workflow_versions"
            " WHERE tenant = $1 ORDER BY name, version DESC"
        )
        return [StoredWorkflow(**row) for row in await self._fetch(query, tenant)]

    async def delete_workflow(self, tenant: str, name: str) -> bool:
        query = "DELETE FROM workflow_versions WHERE tenant = $1 AND name = $2"
        # Not idempotent: run twice, the second would say there was nothing to delete.
        return await self._execute(query, tenant, name, idempotent=False) != "DELETE 0"

    # -- executions

    async def create_execution(self, execution: Execution) -> None:
        e = execution
        params = _json.encode(e.params).decode()
        args = (e.id, e.tenant, e.workflow, e.workflow_version, e.status, e.created_at)
        more = (e.started_at, e.finished_at, params, e.error)

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(_INSERT_EXECUTION, *args, *more)

        if await self.pool.run(op, idempotent=False) is None:
            raise InvalidInputError(f"execution {e.id!r} already exists", error_class="conflict")

    async def get_execution(self, execution_id: str) -> Execution | None:
        query = f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = $1"
        row = await self._fetchrow(query, execution_id)
        return None if row is None else _execution(row)

    async def list_executions(
        self, tenant: str, *, workflow: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        query = (
            f"SELECT {_EXECUTION_COLUMNS} FROM executions"
            " WHERE tenant = $1 AND ($2::text IS NULL OR workflow = $2)"
            " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        )
        rows = await self._fetch(query, tenant, workflow, limit, offset)
        return [_execution(row) for row in rows]

    async def count_active_executions(self, tenant: str) -> int:
        row = await self._fetchrow(_COUNT_ACTIVE, tenant)
        return int(row["count"]) if row is not None else 0

    async def create_execution_capped(self, execution: Execution, max_active: int) -> bool:
        e = execution
        params = _json.encode(e.params).decode()
        args = (e.id, e.tenant, e.workflow, e.workflow_version, e.status, e.created_at)
        more = (e.started_at, e.finished_at, params, e.error)

        async def op(conn: Connection) -> str:
            # The tenant's lock serializes capped creations until commit; the count runs
            # after it is taken, so it sees every execution a concurrent start committed.
            async with conn.transaction():
                await conn.execute(_LOCK_TENANT_STARTS, e.tenant)
                active: int = await conn.fetchval(_COUNT_ACTIVE, e.tenant)
                if active >= max_active:
                    return "capped"
                inserted = await conn.fetchval(_INSERT_EXECUTION, *args, *more)
                return "exists" if inserted is None else "created"

        outcome = await self.pool.run(op, idempotent=False)
        if outcome == "exists":
            raise InvalidInputError(f"execution {e.id!r} already exists", error_class="conflict")
        return outcome == "created"

    # -- API keys

    async def create_api_key(
        self,
        key_hash: str,
        tenant: str,
        *,
        admin: bool = False,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        key = ApiKey(
            id=key_id_of(key_hash),
            tenant=tenant,
            created_at=self._clock.wall(),
            admin=admin,
            expires_at=expires_at,
        )
        query = (
            "INSERT INTO api_keys (key_hash, id, tenant, created_at, admin, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        )
        args = (key_hash, key.id, tenant, key.created_at, admin, expires_at)
        if await self._execute(query, *args, idempotent=False) == "INSERT 0 0":
            raise InvalidInputError("that API key exists")
        return key

    async def check_api_key(self, key_hash: str) -> KeyCheck:
        row = await self._fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
        )
        if row is None:
            return KeyCheck(refused="unknown")
        key = ApiKey(**row)
        if key.revoked_at is not None:
            return KeyCheck(refused="revoked")
        if key.expires_at is not None and key.expires_at <= self._clock.wall():
            return KeyCheck(refused="expired")
        return KeyCheck(key=key)

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKey]:
        query = (
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR tenant = $1)"
            " ORDER BY created_at, id"
        )
        return [ApiKey(**row) for row in await self._fetch(query, tenant)]

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        query = (
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1"
            f" RETURNING {_KEY_COLUMNS}"
        )
        # Idempotent: run twice, the first revocation time stays.
        row = await self._fetchrow(query, key_id, self._clock.wall())
        return None if row is None else ApiKey(**row)

    async def transition(
        self,
        execution_id: str,
        to_status: ExecutionStatus,
        *,
        from_statuses: Collection[ExecutionStatus],
        error: str | None = None,
    ) -> bool:
        starts = to_status == "running"
        ends = to_status in TERMINAL_STATUSES
        args = (execution_id, to_status, list(from_statuses), starts, ends, self._clock.wall())

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(_TRANSITION, *args, error)

        # Not idempotent: run twice, the second would report another worker's win as a loss.
        return await self.pool.run(op, idempotent=False) is not None

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
        if not keys:
            return Registered()
        if payloads is not None and len(payloads) != len(keys):
            raise ValueError("register_tasks: one payload per key")
        at = self._clock.wall()

        async def op(conn: Connection) -> Registered:
            return await tasks.add(
                conn,
                self.counters,
                execution_id,
                keys,
                max_total,
                payloads=payloads,
                at=at,
                window=window,
            )

        # Idempotent: a second run hands back the same keys to publish, registered and
        # unfinished (those the first run held stay held, in neither list).
        return await self.pool.run(op, idempotent=True)

    async def release_tasks(self, execution_id: str, *, window: int) -> list[str]:
        at = self._clock.wall()

        async def op(conn: Connection) -> list[str]:
            return await tasks.release(conn, execution_id, window, at)

        # Not idempotent: a second run after a lost commit would release more.
        return await self.pool.run(op, idempotent=False)

    async def remove_tasks(self, execution_id: str, keys: Sequence[str]) -> int:
        if not keys:
            return 0

        async def op(conn: Connection) -> int:
            return await tasks.remove(conn, self.counters, execution_id, keys)

        return await self.pool.run(op, idempotent=True)

    async def finish_tasks(self, execution_id: str, results: Sequence[TaskResult]) -> int:
        if not results:
            return 0
        at = self._clock.wall()

        async def op(conn: Connection) -> int:
            return await tasks.finish(conn, self.counters, execution_id, results, at)

        # Idempotent for the counters (only a first finish counts); a second run after a
        # lost commit reports 0 counted, which no caller relies on.
        return await self.pool.run(op, idempotent=True)

    async def progress(self, execution_id: str) -> Progress:
        async def op(conn: Connection) -> Progress:
            return await tasks.progress(conn, execution_id)

        return await self.pool.run(op, idempotent=True)

    async def failures(self, execution_id: str, *, limit: int = 100) -> list[Failure]:
        if limit <= 0:
            return []
        query = (
            "SELECT key, url, phase, error_class, message, attempt, at FROM failures"
            " WHERE execution_id = $1 ORDER BY id DESC LIMIT $2"
        )
        return [Failure(**row) for row in await self._fetch(query, execution_id, limit)]

    async def iter_failures(self, execution_id: str) -> AsyncIterator[Failure]:
        query = (
            "SELECT id, key, url, phase, error_class, message, attempt, at FROM failures"
            " WHERE execution_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )
        after = 0
        while True:
            rows = await self._fetch(query, execution_id, after, FAILURES_PAGE)
            for row in rows:
                after = row.pop("id")
                yield Failure(**row)
            if len(rows) < FAILURES_PAGE:
                return

    async def warning_examples(self, execution_id: str) -> list[WarningExample]:
        async def op(conn: Connection) -> list[WarningExample]:
            return await warning_examples.read(conn, execution_id)

        return await self.pool.run(op, idempotent=True)

    # -- reconciling, stalls and cancels

    async def lease_tasks(self, execution_id: str, keys: Sequence[str], until: datetime) -> int:
        if not keys:
            return 0
        at = self._clock.wall()

        async def op(conn: Connection) -> int:
            return await reconcile.lease(
                conn, self.counters, execution_id, keys, until=until, at=at
            )

        return await self.pool.run(op, idempotent=True)

    async def live_leases(self, execution_id: str) -> int:
        row = await self._fetchrow(reconcile.LIVE_LEASES, execution_id, self._clock.wall())
        return int(row["count"]) if row is not None else 0

    async def reclaim_tasks(
        self, execution_id: str, *, registered_before: datetime, limit: int = 1000
    ) -> list[str]:
        if limit <= 0:
            return []
        now = self._clock.wall()

        async def op(conn: Connection) -> list[str]:
            rows = await conn.fetch(reconcile.RECLAIM, execution_id, registered_before, now, limit)
            return [str(row["task"]) for row in rows]

        # Not idempotent: a second run would find these tasks just reclaimed.
        return await self.pool.run(op, idempotent=False)

    async def activity(self, execution_id: str) -> Activity:
        async def op(conn: Connection) -> Activity:
            return await reconcile.activity(conn, execution_id)

        return await self.pool.run(op, idempotent=True)

    async def freeze(self, execution_id: str) -> bool:
        now = self._clock.wall()

        async def op(conn: Connection) -> bool:
            return await reconcile.freeze(conn, execution_id, now)

        return await self.pool.run(op, idempotent=False)

    async def sweep_candidates(self, *, stalled_before: datetime, limit: int = 100) -> list[str]:
        rows = await self._fetch(reconcile.SWEEP_CANDIDATES, stalled_before, limit)
        return [str(row["id"]) for row in rows]

    async def claim(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.wall()
        until = now + timedelta(seconds=ttl_s)

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(reconcile.CLAIM, name, owner, now, until)

        # Idempotent for one owner: a second run renews the claim it just took.
        return await self.pool.run(op, idempotent=True) is not None

    async def last_claimed(self, name: str) -> datetime | None:
        row = await self._fetchrow(reconcile.LAST_CLAIMED, name)
        claimed: datetime | None = None if row is None else row["claimed_at"]
        return claimed

    async def backlog(self) -> Backlog:
        rows = await self.pool.run(backlog.queued, idempotent=True)
        held = 0
        for execution_id, queued, _ in rows:
            progress = await self.progress(execution_id)
            held += max(progress.published - progress.finished - queued, 0)
        oldest = [at for _, _, at in rows if at is not None]
        return Backlog(
            running=len(rows),
            queued=sum(queued for _, queued, _ in rows),
            held=held,
            oldest_queued_at=min(oldest, default=None),
        )

    # -- outputs

    async def add_output(self, execution_id: str, output: OutputObject) -> None:
        query = (
            "INSERT INTO outputs (execution_id, path, size_bytes, records, kind)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (execution_id, path) DO UPDATE SET size_bytes = excluded.size_bytes,"
            " records = excluded.records, kind = excluded.kind"
        )
        o = output
        args = (execution_id, o.path, o.size_bytes, o.records, o.kind)
        await self._execute(query, *args, idempotent=True)

    async def outputs(self, execution_id: str) -> list[OutputObject]:
        query = (
            "SELECT path, size_bytes, records, kind FROM outputs"
            " WHERE execution_id = $1 ORDER BY path"
        )
        return [OutputObject(**row) for row in await self._fetch(query, execution_id)]

    # -- webhooks

    async def enqueue_webhook(
        self, execution_id: str, *, tenant: str, url: str, payload: str
    ) -> bool:
        now = self._clock.wall()

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(webhooks.ENQUEUE, execution_id, tenant, url, payload, now)

        # Not idempotent in its answer: run again after a lost commit, it says "not new".
        return await self.pool.run(op, idempotent=False) is not None

    async def claim_webhooks(self, *, limit: int, lease_s: float) -> list[WebhookDelivery]:
        if limit <= 0:
            return []
        now = self._clock.wall()
        until = now + timedelta(seconds=lease_s)

        async def op(conn: Connection) -> list[WebhookDelivery]:
            rows = await conn.fetch(webhooks.CLAIM, now, limit, until)
            return [webhooks.delivery(row) for row in rows]

        # Not idempotent: a second run would claim another attempt.
        claimed = await self.pool.run(op, idempotent=False)
        return sorted(claimed, key=lambda d: (d.next_at, d.execution_id))

    async def record_webhook_attempt(
        self,
        execution_id: str,
        *,
        attempt: int,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        now = self._clock.wall()
        if delivered:
            status, next_at, error, finished_at = "delivered", None, None, now
        elif retry_at is not None:
            status, next_at, finished_at = "pending", retry_at, None
        else:
            status, next_at, finished_at = "failed", None, now
        args = (execution_id, attempt, status, next_at, error, finished_at)

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(webhooks.RECORD, *args)

        # Idempotent in effect (the same values again); a second run after a lost commit
        # of a final outcome answers False, which callers only log.
        return await self.pool.run(op, idempotent=True) is not None

    async def get_webhook(self, execution_id: str) -> WebhookDelivery | None:
        row = await self._fetchrow(webhooks.GET, execution_id)
        return None if row is None else webhooks.delivery(row)

    # -- secrets and login sessions (sealed with the cipher, if there is one)

    async def put_secret(
        self, tenant: str, name: str, value: str, *, max_secrets: int = 0
    ) -> SecretInfo | None:
        now = self._clock.wall()

        async def op(conn: Connection) -> SecretInfo | None:
            return await secrets.put(
                conn, self._cipher, tenant, name, value, at=now, max_secrets=max_secrets
            )

        # Idempotent: putting the same value again changes nothing but its time.
        return await self.pool.run(op, idempotent=True)

    async def list_secrets(self, tenant: str) -> list[SecretInfo]:
        return [SecretInfo(**row) for row in await self._fetch(secrets.LIST, tenant)]

    async def delete_secret(self, tenant: str, name: str) -> bool:
        return await self._execute(secrets.DELETE, tenant, name, idempotent=False) != "DELETE 0"

    async def get_secrets(self, tenant: str, names: Collection[str]) -> dict[str, str]:
        if not names:
            return {}

        async def op(conn: Connection) -> dict[str, str]:
            return await secrets.get(conn, self._cipher, tenant, names)

        return await self.pool.run(op, idempotent=True)

    async def put_session(self, execution_id: str, session: LoginSession) -> bool:
        body = secrets.session_body(self._cipher, execution_id, session)
        at = session.created_at or self._clock.wall()

        async def op(conn: Connection) -> Any:
            return await conn.fetchval(
                secrets.PUT_SESSION, execution_id, session.generation, body, at
            )

        return await self.pool.run(op, idempotent=False) is not None

    async def get_session(self, execution_id: str) -> LoginSession | None:
        row = await self._fetchrow(secrets.GET_SESSION, execution_id)
        return None if row is None else secrets.session_of(self._cipher, execution_id, row["body"])

    # -- retention (backends/postgres/retention.py)

    async def prunable_executions(
        self, *, ended_before: datetime, after: str = "", limit: int = 100
    ) -> list[str]:
        return await retention.prunable(
            self.pool, ended_before=ended_before, after=after, limit=limit
        )

    async def prune_execution(
        self,
        execution_id: str,
        *,
        ended_before: datetime,
        batch: int = PRUNE_BATCH,
        dry_run: bool = False,
    ) -> PruneCounts:
        return await retention.prune_execution(
            self.pool,
            execution_id,
            ended_before=ended_before,
            freeze=lambda: self.freeze(execution_id),
            batch=batch,
            dry_run=dry_run,
        )

    async def prune_claims(
        self, *, expired_before: datetime, batch: int = PRUNE_BATCH, dry_run: bool = False
    ) -> int:
        return await retention.prune_claims(
            self.pool, expired_before=expired_before, batch=batch, dry_run=dry_run
        )

    # -- single statements

    async def _fetch(self, query: str, *args: object) -> list[dict[str, Any]]:
        async def op(conn: Connection) -> list[dict[str, Any]]:
            return [dict(row) for row in await conn.fetch(query, *args)]

        return await self.pool.run(op, idempotent=True)

    async def _fetchrow(self, query: str, *args: object) -> dict[str, Any] | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def _execute(self, query: str, *args: object, idempotent: bool) -> str:
        async def op(conn: Connection) -> str:
            return await conn.execute(query, *args)

        return await self.pool.run(op, idempotent=idempotent)


def _execution(row: dict[str, Any]) -> Execution:
    return Execution(**{**row, "params": msgspec.json.decode(row["params"])})


FAILURES_PAGE = 1000  # failures read per query by iter_failures
