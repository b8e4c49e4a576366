"""What a Postgres failure means for the caller: retry, give up, or fix the deployment.

Messages name the database as ``host:port/database`` and never carry the DSN itself, which
may hold a password.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import asyncpg

from backends.errors import PermanentError, RetryableError, TrawlError

# Class 08 (connection exceptions, which PgBouncer also uses for "cannot connect to server"
# and its timeouts), class 57 (admin shutdown, crash, cannot connect now, cancelled), too
# many connections, and the socket-level errors of a refused or dropped connection.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)

# PgBouncer reports everything as 08P01, also what no retry will fix.
_PGBOUNCER_PERMANENT = re.compile(
    r"does not exist|authentication failed|no such user|unsupported startup parameter"
)

_NOT_MIGRATED = (
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.UndefinedFunctionError,
)


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of a DSN, without user or password: what errors may show."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "the configured database"
    query = parse_qs(parts.query)
    hosts = parts.netloc.rpartition("@")[2] or query.get("host", ["localhost"])[0]
    if ":" not in hosts.rpartition("]")[2] and "," not in hosts:
        hosts = f"{hosts}:{query.get('port', ['5432'])[0]}"
    database = parts.path.lstrip("/") or query.get("dbname", [""])[0]
    return f"{hosts}/{database}" if database else hosts


def is_unavailable(exc: BaseException) -> bool:
    """The connection could not be made or was lost: another try may well succeed."""
    if _pgbouncer_refusal(exc):
        return False
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg's word for using a connection that dropped between two statements.
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc)


def _pgbouncer_refusal(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.exceptions.ProtocolViolationError) and bool(
        _PGBOUNCER_PERMANENT.search(str(exc))
    )


def is_rolled_back(exc: BaseException) -> bool:
    """Serialization failure or deadlock: the server rolled the transaction back, so running
    it again is safe whatever it did."""
    return isinstance(exc, asyncpg.exceptions.TransactionRollbackError)


def translate(exc: Exception, where: str) -> Exception:
    """The TrawlError that tells the caller what to do about ``exc``; ``exc`` itself when it
    is a bug rather than a condition of the database."""
    if isinstance(exc, TrawlError):
        return exc
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if is_unavailable(exc):
        return RetryableError(
            f"Postgres at {where} is unavailable ({detail})", error_class="database_unavailable"
        )
    if is_rolled_back(exc):
        return RetryableError(
            f"Postgres at {where} rolled a transaction back ({detail})",
            error_class="database_conflict",
        )
    if isinstance(exc, _NOT_MIGRATED):
        return PermanentError(
            f"the database at {where} lacks the schema this version needs ({detail}); "
            "run `trawl migrate`",
            error_class="database_schema",
        )
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return PermanentError(
            f"the database at {where} does not exist ({detail})", error_class="database_missing"
        )
    if _pgbouncer_refusal(exc):
        return PermanentError(
            f"PgBouncer at {where} refused the connection ({detail})",
            error_class="database_refused",
        )
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        return PermanentError(
            f"Postgres at {where} refused the credentials ({detail})",
            error_class="database_auth",
        )
    return exc
