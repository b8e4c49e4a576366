"""Redis clients for the adapters: a bounded pool from a URL, key prefixes, error mapping.

Every adapter talks to Redis through ``retryable``, so a Redis that is down, restarting or
stalled reaches the worker as a ``RetryableError`` naming the server (the worker nacks and
tries later) and never as a raw redis-py exception.

The client retries a command once, at once, on a broken connection only: that replaces a
pooled socket a Redis restart killed. A timeout is not retried (a stalled server gets no
second copy of the load). A retried command may have run the first time, so every command
the adapters send is safe to run twice: the Lua scripts recognise their own earlier run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backends.errors import InvalidInputError, RetryableError

DEFAULT_PREFIX = "trawl:"

# Errors that mean "Redis is not answering right now"; anything else is a bug and surfaces.
# ReadOnlyError: a failover left us talking to a replica for a moment. OutOfMemoryError: a
# full Redis that may not evict (noeviction): an outage until it is resized, not a reason to
# fail the page whose links could not be claimed.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, OSError)
_PREFIX_RE = re.compile(r"[^\s*?\[\]]*")


class RedisOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the pool behaves. The defaults suit a worker with a few dozen tasks in flight."""

    max_connections: int = 32
    # How long a caller waits for a free pooled connection before it is told to retry.
    pool_timeout_s: float = 5.0
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    # A connection idle longer than this is PINGed before use, so a dead one is noticed
    # before a command is sent on it; 0 turns the checks off.
    health_check_interval_s: int = 30

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise InvalidInputError(f"max_connections must be >= 1, not {self.max_connections}")
        for name in ("pool_timeout_s", "socket_timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.health_check_interval_s < 0:
            raise InvalidInputError(
                f"health_check_interval_s must be >= 0, not {self.health_check_interval_s}"
            )


def connect(
    url: str,
    options: RedisOptions | None = None,
    *,
    connection_class: type[Connection] = Connection,
) -> Redis:
    """A client over a bounded, blocking pool; closing the client closes the pool.
    ``connection_class`` is for instrumentation (tests count round trips with it)."""
    options = options or RedisOptions()
    pool = BlockingConnectionPool.from_url(
        url,
        connection_class=connection_class,
        max_connections=options.max_connections,
        timeout=options.pool_timeout_s,
        socket_timeout=options.socket_timeout_s,
        socket_connect_timeout=options.connect_timeout_s,
        health_check_interval=options.health_check_interval_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


def address_of(client: Redis) -> str:
    """Where ``client`` connects, for error messages: ``host:port`` or ``unix:path``."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def check_prefix(prefix: str) -> str:
    """Key prefixes are namespaces (tests, tenants); glob characters would make cleaning one
    up by pattern touch another's keys."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidInputError(f"a Redis key prefix has no spaces or *?[]: {prefix!r}")
    return prefix


@contextmanager
def retryable(address: str, operation: str) -> Iterator[None]:
    """Turn "Redis is unavailable" into a RetryableError that names the server."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise RetryableError(
            f"Redis at {address} is unavailable ({operation}): {type(exc).__name__}: {exc}",
            error_class="redis_unavailable",
        ) from exc
