"""PostgresPool: an asyncpg pool made safe for PgBouncer's transaction mode, with retries.

Through PgBouncer in transaction pooling mode consecutive transactions of one client
connection may run on different server connections, so nothing may live in the session:
``statement_cache_size=0`` (asyncpg then re-parses its unnamed statement together with the
bind, never across a Sync), no session SET, LISTEN or advisory lock, and no reset query on
release (it would run on whichever server connection is at hand and do nothing useful).

Retries: when no connection could be had, nothing was sent, so any operation is tried again
until ``retry_deadline_s``; so is one whose transaction the server rolled back (deadlock,
serialization). When a connection drops while an operation runs, whether it took effect is
unknown: it is tried again only if the caller says it is idempotent, otherwise the caller
gets a RetryableError at once. A PgBouncer restart is thus invisible to idempotent work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from backends.clock import Clock, SystemClock
from backends.errors import RetryableError, TrawlError
from backends.postgres.errors import describe_dsn, is_rolled_back, is_unavailable, translate

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy, _InitCallback

    Connection = PoolConnectionProxy[asyncpg.Record]
    ConnectionInit = _InitCallback[asyncpg.Record]

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_DELAY_S = 0.05
MAX_RETRY_DELAY_S = 1.0


class _OneLine(logging.Filter):
    """asyncpg logs a whole traceback each time it fails to refill the pool to its minimum
    size, which every PgBouncer restart makes routine: keep the cause, on one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())


async def _keep_session(connection: Any) -> None:
    """Release without a reset query: there is no session state to reset (asyncpg still
    rolls back a transaction left open)."""


class PostgresPool:
    """A pool of connections to one database (normally PgBouncer's address) that runs
    operations with bounded retries and turns failures into TrawlErrors naming the database
    (``where``: host:port/database, never the password)."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        where: str,
        clock: Clock | None = None,
        retry_deadline_s: float = 10.0,
    ) -> None:
        self.where = where
        self.retries = 0  # operations tried again so far, for logs and tests
        self._pool = pool
        self._clock = clock or SystemClock()
        self._retry_deadline_s = retry_deadline_s

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        clock: Clock | None = None,
        retry_deadline_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float | None = 60.0,
        init: ConnectionInit | None = None,
    ) -> PostgresPool:
        """Open the pool, waiting up to ``retry_deadline_s`` for the database to answer (a
        PgBouncer sidecar may start after us). ``init`` runs on each new connection."""
        where = describe_dsn(dsn)
        clock = clock or SystemClock()

        async def open_pool() -> asyncpg.Pool[asyncpg.Record]:
            return await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                statement_cache_size=0,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                reset=_keep_session,
                init=init,
            )

        pool = await retrying(open_pool, where=where, clock=clock, deadline_s=retry_deadline_s)
        return cls(pool, where=where, clock=clock, retry_deadline_s=retry_deadline_s)

    async def run(self, op: Callable[[Connection], Awaitable[T]], *, idempotent: bool) -> T:
        """Run ``op`` on a pooled connection, trying again as the module docstring says."""

        async def attempt() -> T:
            conn = await self._pool.acquire()  # failing here, nothing was sent
            try:
                return await op(conn)
            except Exception as exc:
                lost = is_unavailable(exc) or conn.is_closed()
                if lost and not idempotent and not is_rolled_back(exc):
                    raise RetryableError(
                        f"Postgres at {self.where} dropped the connection during the operation "
                        f"({type(exc).__name__}: {exc}), so whether it took effect is unknown",
                        error_class="database_unavailable",
                    ) from exc
                if lost and not is_unavailable(exc):
                    raise ConnectionError(f"connection lost ({type(exc).__name__}: {exc})") from exc
                raise
            finally:
                await self._pool.release(conn)

        def count_retry() -> None:
            self.retries += 1

        return await retrying(
            attempt,
            where=self.where,
            clock=self._clock,
            deadline_s=self._retry_deadline_s,
            on_retry=count_retry,
        )

    async def close(self) -> None:
        await self._pool.close()


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    where: str,
    clock: Clock,
    deadline_s: float,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``op`` until it succeeds, fails for a reason another try will not fix, or
    ``deadline_s`` has passed; with backoff between tries. ``op`` must only fail retryably
    when trying again is safe; a TrawlError it raises is final."""
    started = clock.now()
    delay_s = FIRST_RETRY_DELAY_S
    while True:
        try:
            return await op()
        except TrawlError:
            raise
        except Exception as exc:
            error = translate(exc, where)
            if not isinstance(error, RetryableError):
                if error is exc:
                    raise
                raise error from exc
            if clock.now() - started + delay_s > deadline_s:
                raise RetryableError(
                    f"{error}; gave up after {deadline_s:g} s of retries",
                    error_class=error.error_class,
                ) from exc
            log.warning("Postgres at %s: %s; retrying in %.2f s", where, exc, delay_s)
            if on_retry is not None:
                on_retry()
            await clock.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
