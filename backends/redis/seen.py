"""RedisSeenSet: one Redis hash per execution (key -> claimer), claimed through one Lua
script per batch.

``add_new`` sends a batch as a single EVALSHA (one round trip) that HSETNXes every key with
the caller's claimer token and returns which were new, or were claimed earlier by the same
claimer; a key repeated in the batch is new only at its first place. The script is atomic,
so a batch is claimed entirely or not at all. The hash's TTL is refreshed on every write:
an execution that stops writing for ``ttl_s`` loses its seen-set.

A call whose reply is lost on the wire is sent again once by the client (see client.py);
the script leaves a receipt (its answer, kept for a minute) so the second run returns the
first answer instead of reporting the caller's own keys as already seen. A call that still
fails raises RetryableError, and if its script did run (a timeout after Redis acted), its
keys stay claimed by the caller's claimer, so the redelivered task is told they are new.

Redis is a cache of claims, not the record of truth: if it restarts without its data,
every key is new again (except to a worker that saw it claimed, below) and some pages are
fetched twice. The StateStore's task rows and the export's dedup by record key keep the
output exact.

The keys this process has seen claimed are remembered with their claimer (``KnownClaims``,
backends/redis/claims.py, which says why that is safe; the script says who holds each key
it did not give the caller): asked about one of them for another claimer, the answer is
"claimed" without a round trip, which is most keys of most pages. Only keys nothing here
knows, and keys asked for by the claimer that holds them, go to Redis. So that an
execution whose pages bring nothing new still keeps its set alive, a call answered here
goes to Redis all the same (refreshing the TTL) when this process has not written the set
for a tenth of its TTL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources

from redis.asyncio import Redis

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.redis.claims import DEFAULT_CAPACITY, KnownClaims
from backends.redis.client import (
    DEFAULT_PREFIX,
    RedisOptions,
    address_of,
    check_prefix,
    connect,
    retryable,
)
from backends.seen import SeenSet

ADD_NEW_LUA = resources.files("backends.redis").joinpath("add_new.lua").read_text(encoding="utf-8")

DEFAULT_TTL_S = 7 * 24 * 3600.0
# Keys per script call. One call blocks Redis while it runs (~1 ms per few thousand keys);
# a batch beyond this is sent as several calls, in order.
MAX_KEYS_PER_CALL = 10_000
# Long enough to outlast a client retry, short enough that receipts cost nothing.
_RECEIPT_TTL_MS = 60_000
# Executions whose last write is remembered (for the TTL refresh); the oldest are forgotten
# beyond this, which only makes their next call go to Redis.
_MAX_WRITTEN = 10_000


class RedisSeenSet(SeenSet):
    """Seen task keys per execution, shared by every worker."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_TTL_S,
        owns_client: bool = False,
        known_claims: int = DEFAULT_CAPACITY,
        clock: Clock | None = None,
    ) -> None:
        """``known_claims``: how many claims this process has seen are remembered, to be
        answered without Redis (0: none, every key is asked about); ``clock`` times the TTL
        refresh of sets answered from them."""
        if not ttl_s >= 1:
            raise InvalidInputError(f"ttl_s must be >= 1, not {ttl_s}")
        self._redis = redis
        self._prefix = check_prefix(prefix)
        self._ttl_ms = int(ttl_s * 1000)
        self._owns_client = owns_client
        self._address = address_of(redis)
        self._add_new = redis.register_script(ADD_NEW_LUA)
        self._known = KnownClaims(known_claims)
        self._clock = clock or SystemClock()
        self._refresh_s = ttl_s / 10
        self._written: dict[str, float] = {}  # execution -> when this process last wrote it

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_TTL_S,
        options: RedisOptions | None = None,
        known_claims: int = DEFAULT_CAPACITY,
    ) -> RedisSeenSet:
        """A seen-set with its own client, closed by ``close``."""
        return cls(
            connect(url, options),
            prefix=prefix,
            ttl_s=ttl_s,
            owns_client=True,
            known_claims=known_claims,
        )

    def key(self, execution_id: str) -> str:
        """The set of one execution (the braces keep its keys in one cluster slot)."""
        return f"{self._prefix}seen:{{{execution_id}}}"

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        # A key this process has seen held by another claimer is claimed: answered here. A
        # key held by ``claimer`` itself goes to Redis, which knows whether it still is.
        if "\n" in claimer:
            raise InvalidInputError(f"a seen-set claimer has no line breaks: {claimer!r}")
        young, old = self._known.owners(execution_id)
        flags: list[bool] = []
        ask: list[str] = []
        at: list[int] = []
        for key in keys:
            holder = young.get(key)
            if holder is None:
                holder = old.get(key)
            if holder is not None and (holder != claimer or not claimer):
                flags.append(False)
            else:
                at.append(len(flags))
                flags.append(False)
                ask.append(key)
        if not ask and keys and self._refresh_due(execution_id):
            ask, at = list(keys), list(range(len(keys)))
        if ask:
            holders = await self._claim(execution_id, ask, claimer)
            for i, holder in zip(at, holders, strict=True):
                flags[i] = holder is None
            self._known.remember(
                execution_id,
                ((k, claimer if h is None else h) for k, h in zip(ask, holders, strict=True)),
            )
        return flags

    async def _claim(
        self, execution_id: str, keys: Sequence[str], claimer: str
    ) -> list[str | None]:
        """Ask Redis, one script call per ``MAX_KEYS_PER_CALL`` keys: for each key, None if
        it is ``claimer``'s (new, or claimed by it before), else who holds it."""
        holders: list[str | None] = []
        set_key = self.key(execution_id)
        for start in range(0, len(keys), MAX_KEYS_PER_CALL):
            chunk = keys[start : start + MAX_KEYS_PER_CALL]
            receipt = f"{set_key}:receipt:{uuid.uuid4().hex}"
            with retryable(self._address, "seen-set add_new"):
                answer = await self._add_new(
                    keys=[set_key, receipt], args=[self._ttl_ms, _RECEIPT_TTL_MS, claimer, *chunk]
                )
            holders.extend(_holders(answer, len(chunk)))
        self._wrote(execution_id)
        return holders

    def _refresh_due(self, execution_id: str) -> bool:
        written = self._written.get(execution_id)
        return written is None or self._clock.now() - written >= self._refresh_s

    def _wrote(self, execution_id: str) -> None:
        self._written.pop(execution_id, None)
        if len(self._written) >= _MAX_WRITTEN:
            del self._written[next(iter(self._written))]
        self._written[execution_id] = self._clock.now()

    async def discard(self, execution_id: str, keys: Sequence[str]) -> None:
        if keys:
            self._known.drop(execution_id, keys)
            with retryable(self._address, "seen-set discard"):
                await self._redis.hdel(self.key(execution_id), *keys)

    async def forget(self, execution_id: str) -> None:
        self._known.forget(execution_id)
        self._written.pop(execution_id, None)
        with retryable(self._address, "seen-set forget"):
            await self._redis.unlink(self.key(execution_id))  # frees a big set off-thread

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _holders(answer: bytes | str, expected: int) -> list[str | None]:
    """The script's answer (add_new.lua): per key, None if it is the caller's, else who
    holds it."""
    text = answer.decode("utf-8") if isinstance(answer, bytes) else answer
    flags, *taken = text.split("\n")
    if len(flags) != expected or len(taken) != flags.count("0"):  # never expected
        raise RuntimeError(
            f"add_new script answered {len(flags)} flags and {len(taken)} holders "
            f"for {expected} keys"
        )
    others = iter(taken)
    return [None if flag == "1" else next(others) for flag in flags]
