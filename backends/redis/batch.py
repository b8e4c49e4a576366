"""Batcher: the Redis commands an adapter's callers issue while one round trip is in flight
go together in the next, as one pipeline.

A worker asks the rate limiter for a permit and gives one back for every page, from tens of
tasks at once. Sent one by one, each command costs a request of its own: the client's
bookkeeping (pool, retries, metrics), a send and a receive, ~60-120 us of CPU. In a
pipeline, the commands of many callers share one request and cost ~15-20 us each
(bench/results/cpu-per-page-changes.md). No command waits for company: the first goes at
once, and what arrives while it is on the wire goes next.

- **Order.** One pipeline at a time, its commands in the order they were issued, so each
  command finds every earlier one done (a permit given back before the next one is asked
  for, as when they are sent one by one).
- **One connection.** Pipelines go on a connection of the batcher's own, taken from the
  client's pool on first use and given back by ``close``: one request at a time is all it
  carries, and the pool's bookkeeping per request is skipped.
- **Errors.** A connection error or a timeout fails every command of its pipeline, with
  that error (callers map it to RetryableError: backends/redis/client.py). A broken
  connection is replaced and the pipeline sent once more, as the client does for a single
  command, so every command sent through here must be safe to run twice. An error reply
  fails its own command only.
- **Scripts.** A script is sent as EVALSHA; when Redis does not know it (NOSCRIPT: it
  restarted), the script is loaded and its commands are sent once more.
- **Cancelled callers.** A caller that stops waiting does not stop its command, which may
  already be on the wire: its reply goes to the command's ``orphaned`` callback (a permit
  nobody will use is given back there).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Connection, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

log = logging.getLogger(__name__)

Orphaned = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, sent by its SHA1 and loaded when the server lacks it."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode("utf-8")).hexdigest())


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    script: Script | None
    orphaned: Orphaned | None


class Batcher:
    """Commands to one Redis client, pipelined while a round trip is in flight."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Command] = []
        self._sender: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._dirty = False  # a request on the connection did not end cleanly

    async def call(self, *args: Any, orphaned: Orphaned | None = None) -> Any:
        """Send one command; its reply (an error reply raises)."""
        return await self._queue(args, None, orphaned)

    async def run_script(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        *,
        orphaned: Orphaned | None = None,
    ) -> Any:
        """Run ``script`` over ``keys`` with ``args``; its reply."""
        return await self._queue(("EVALSHA", script.sha, len(keys), *keys, *args), script, orphaned)

    def send_nowait(self, *args: Any, what: str) -> None:
        """Send a command whose reply nobody waits for; a failure is logged as a warning
        naming ``what``."""
        self._queue(args, None, None).add_done_callback(functools.partial(_log_failure, what))

    def _queue(
        self, args: tuple[Any, ...], script: Script | None, orphaned: Orphaned | None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Command(args, future, script, orphaned))
        if self._sender is None:
            self._sender = loop.create_task(self._send_pending(), name="redis-batcher")
        return future

    async def wait_idle(self) -> None:
        """Return once every command issued so far has its reply (or error)."""
        while self._sender is not None:
            await asyncio.wait([self._sender])

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        finally:
            self._sender = None
            # Only if this task itself was cancelled (the loop is closing): nothing will
            # send what is left, so its callers are told.
            left, self._pending = self._pending, []
            for command in left:
                command.future.cancel()

    async def _send(self, batch: list[_Command]) -> None:
        try:
            replies = await self._pipeline(batch)
            unknown = [c for c, r in zip(batch, replies, strict=True) if _no_script(r)]
            if unknown:
                for source in {c.script.source for c in unknown if c.script is not None}:
                    await self._redis.script_load(source)
                retried = dict(zip(map(id, unknown), await self._pipeline(unknown), strict=True))
                replies = [retried.get(id(c), r) for c, r in zip(batch, replies, strict=True)]
        except BaseException as exc:
            for command in batch:
                _settle(command, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for command, reply in zip(batch, replies, strict=True):
            _settle(command, reply, reply if isinstance(reply, Exception) else None)

    async def _pipeline(self, batch: list[_Command]) -> list[Any]:
        """Send ``batch`` as one request on the batcher's connection and read a reply (or
        error reply) per command. A broken connection is replaced and the request sent
        once more; any other failure leaves the connection to be replaced before the next
        request (its replies may be half read)."""
        packed = None
        for attempt in (1, 2):
            conn = await self._connection()
            if packed is None:
                packed = conn.pack_commands([command.args for command in batch])
            self._dirty = True
            try:
                await conn.send_packed_command(packed)
                replies = [await _read_reply(conn) for _ in batch]
            except RedisConnectionError:
                if attempt == 2:
                    raise
                continue
            self._dirty = False
            return replies
        raise AssertionError("unreachable")

    async def _connection(self) -> Connection:
        """The batcher's own connection from the client's pool: one request at a time is
        all it carries, so it is never handed back until ``close``."""
        if self._conn is None:
            pool = self._redis.connection_pool
            self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._dirty = False
        elif self._dirty:
            await self._conn.disconnect()  # connects again on the next send
            self._dirty = False
        return self._conn

    async def close(self) -> None:
        """Wait for the commands issued so far, then hand the connection back."""
        await self.wait_idle()
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._dirty:
                await conn.disconnect()
            await self._redis.connection_pool.release(conn)


async def _read_reply(conn: Connection) -> Any:
    """One reply; an error reply is returned, not raised (it is its command's alone)."""
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc


def _log_failure(what: str, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("%s failed: %s", what, future.exception())


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _settle(command: _Command, reply: Any, error: BaseException | None) -> None:
    """Hand the caller its reply or error; a caller gone gets nothing, but a reply that
    came goes to ``orphaned``."""
    future = command.future
    if not future.done():
        if error is None:
            future.set_result(reply)
        elif isinstance(error, Exception):
            future.set_exception(error)
        else:
            future.cancel()
        return
    if error is None and command.orphaned is not None:
        try:
            command.orphaned(reply)
        except Exception:
            log.exception("handling the reply of an abandoned Redis command failed")
