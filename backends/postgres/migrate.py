"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Each migration runs in a transaction of its own that first takes a transaction-scoped
advisory lock. Two processes migrating at once (two instances starting together) therefore
take turns, and the second finds the work done. The lock ends with the transaction, so this
also works through PgBouncer in transaction mode, where a session lock would be held by
whichever server connection happened to run it.

``schema_migrations`` records each version with a checksum of its SQL: editing a migration
that has been applied is an error, not a silent divergence between databases.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from backends.clock import SystemClock
from backends.errors import InvalidInputError, PermanentError
from backends.postgres.errors import describe_dsn, translate
from backends.postgres.pool import PostgresPool, retrying

if TYPE_CHECKING:
    from backends.postgres.pool import Connection

MIGRATIONS: Traversable = resources.files("backends.postgres") / "migrations"

# pg_advisory_xact_lock key: "trawlmig" as a big-endian int64.
LOCK_KEY = int.from_bytes(b"trawlmig", "big")

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text COLLATE "C" PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file; ``version`` is its name without ``.sql`` (``0001_initial``)."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the packaged ones), in order."""
    root = directory if directory is not None else MIGRATIONS
    migrations: dict[str, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise InvalidInputError(f"migration {entry.name!r} is not named NNNN_name.sql")
        number = match.group(1)
        if number in migrations:
            raise InvalidInputError(
                f"two migrations numbered {number}: {migrations[number].version!r} and "
                f"{entry.name!r}"
            )
        migrations[number] = Migration(entry.name.removesuffix(".sql"), entry.read_text())
    return [migrations[number] for number in sorted(migrations)]


async def migrate(
    dsn: str, *, directory: Traversable | Path | None = None, retry_deadline_s: float = 10.0
) -> list[str]:
    """Bring the database at ``dsn`` up to date; return the versions this call applied
    (empty when it already was). What ``trawl migrate`` runs."""
    migrations = load_migrations(directory)
    where = describe_dsn(dsn)

    async def connect() -> asyncpg.Connection[asyncpg.Record]:
        return await asyncpg.connect(dsn, statement_cache_size=0, timeout=5.0)

    conn = await retrying(connect, where=where, clock=SystemClock(), deadline_s=retry_deadline_s)
    try:
        return [m.version for m in migrations if await _apply(conn, m, where)]
    except Exception as exc:
        error = translate(exc, where)
        if error is exc:
            raise
        raise error from exc
    finally:
        await conn.close()


async def _apply(
    conn: asyncpg.Connection[asyncpg.Record], migration: Migration, where: str
) -> bool:
    """Apply one migration unless it was; True if this call applied it."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        checksum = await conn.fetchval(
            "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version
        )
        if checksum is not None:
            if checksum != migration.checksum:
                raise PermanentError(
                    f"migration {migration.version} was applied to {where} with different "
                    "SQL; migrations must not change once applied, add a new one instead",
                    error_class="database_schema",
                )
            return False
        await conn.execute(migration.sql)  # no arguments: the simple protocol, many statements
        await conn.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
            migration.version,
            migration.checksum,
        )
        return True


async def missing_migrations(
    pool: PostgresPool, *, directory: Traversable | Path | None = None
) -> list[str]:
    """The packaged migrations the database has not applied, in order (empty: the schema
    is at the expected version). What readiness checks before a process starts work."""

    async def applied(conn: Connection) -> set[str]:
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
            return set()
        return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}

    done = await pool.run(applied, idempotent=True)
    return [m.version for m in load_migrations(directory) if m.version not in done]
