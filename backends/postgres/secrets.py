"""The SecretStore role in Postgres: tenants' secrets and executions' login sessions
(migration 0009), values sealed by ``backends.secret_cipher`` before they are written."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from backends.secret_cipher import SecretCipher, seal, unseal
from backends.state import LoginSession, SecretInfo

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

# Serializes the capped insert of one tenant's secrets (transaction-scoped: it works through
# PgBouncer's transaction pooling).
LOCK_TENANT = "SELECT pg_advisory_xact_lock(hashtextextended('trawl-secrets:' || $1, 0))"
EXISTS = "SELECT 1 FROM secrets WHERE tenant = $1 AND name = $2"
COUNT = "SELECT count(*) FROM secrets WHERE tenant = $1"
UPSERT = (
    "INSERT INTO secrets (tenant, name, value, updated_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value,"
    " updated_at = excluded.updated_at"
)
LIST = "SELECT name, updated_at FROM secrets WHERE tenant = $1 ORDER BY name"
DELETE = "DELETE FROM secrets WHERE tenant = $1 AND name = $2"
GET = "SELECT name, value FROM secrets WHERE tenant = $1 AND name = ANY($2::text[])"
PUT_SESSION = (
    "INSERT INTO login_sessions AS s (execution_id, generation, body, created_at)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (execution_id) DO UPDATE"
    " SET generation = excluded.generation, body = excluded.body,"
    " created_at = excluded.created_at WHERE s.generation < excluded.generation"
    " RETURNING 1"
)
GET_SESSION = "SELECT body FROM login_sessions WHERE execution_id = $1"

_session_json = msgspec.json.Decoder(LoginSession)


def secret_context(tenant: str, name: str) -> str:
    """What a secret's sealed value is bound to."""
    return f"secret {name!r} of tenant {tenant!r}"


def session_context(execution_id: str) -> str:
    """What a session's sealed body is bound to."""
    return f"login session of execution {execution_id}"


async def put(
    conn: Connection,
    cipher: SecretCipher | None,
    tenant: str,
    name: str,
    value: str,
    *,
    at: datetime,
    max_secrets: int,
) -> SecretInfo | None:
    """Upsert, refusing a new name past ``max_secrets`` (0: no cap) under the tenant's lock."""
    stored = seal(cipher, value, secret_context(tenant, name))
    async with conn.transaction():
        if max_secrets > 0:
            await conn.execute(LOCK_TENANT, tenant)
            exists = await conn.fetchval(EXISTS, tenant, name)
            if exists is None and await conn.fetchval(COUNT, tenant) >= max_secrets:
                return None
        await conn.execute(UPSERT, tenant, name, stored, at)
    return SecretInfo(name=name, updated_at=at)


async def get(
    conn: Connection, cipher: SecretCipher | None, tenant: str, names: Collection[str]
) -> dict[str, str]:
    rows = await conn.fetch(GET, tenant, sorted(set(names)))
    return {
        row["name"]: unseal(cipher, row["value"], secret_context(tenant, row["name"]))
        for row in rows
    }


def session_body(cipher: SecretCipher | None, execution_id: str, session: LoginSession) -> str:
    return seal(cipher, msgspec.json.encode(session).decode(), session_context(execution_id))


def session_of(cipher: SecretCipher | None, execution_id: str, body: str) -> LoginSession:
    return _session_json.decode(unseal(cipher, body, session_context(execution_id)))
