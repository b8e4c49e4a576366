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
every key is new again and some pages are fetched twice. The StateStore's task rows and
the export's dedup by record key keep the output exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources

from redis.asyncio import Redis

from backends.errors import InvalidInputError
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


class RedisSeenSet(SeenSet):
    """Seen task keys per execution, shared by every worker."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_TTL_S,
        owns_client: bool = False,
    ) -> None:
        if not ttl_s >= 1:
            raise InvalidInputError(f"ttl_s must be >= 1, not {ttl_s}")
        self._redis = redis
        self._prefix = check_prefix(prefix)
        self._ttl_ms = int(ttl_s * 1000)
        self._owns_client = owns_client
        self._address = address_of(redis)
        self._add_new = redis.register_script(ADD_NEW_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_TTL_S,
        options: RedisOptions | None = None,
    ) -> RedisSeenSet:
        """A seen-set with its own client, closed by ``close``."""
        return cls(connect(url, options), prefix=prefix, ttl_s=ttl_s, owns_client=True)

    def key(self, execution_id: str) -> str:
        """The set of one execution (the braces keep its keys in one cluster slot)."""
        return f"{self._prefix}seen:{{{execution_id}}}"

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        added: list[bool] = []
        set_key = self.key(execution_id)
        for start in range(0, len(keys), MAX_KEYS_PER_CALL):
            chunk = keys[start : start + MAX_KEYS_PER_CALL]
            receipt = f"{set_key}:receipt:{uuid.uuid4().hex}"
            with retryable(self._address, "seen-set add_new"):
                answer = await self._add_new(
                    keys=[set_key, receipt], args=[self._ttl_ms, _RECEIPT_TTL_MS, claimer, *chunk]
                )
            added.extend(_flags(answer, len(chunk)))
        return added

    async def discard(self, execution_id: str, keys: Sequence[str]) -> None:
        if keys:
            with retryable(self._address, "seen-set discard"):
                await self._redis.hdel(self.key(execution_id), *keys)

    async def forget(self, execution_id: str) -> None:
        with retryable(self._address, "seen-set forget"):
            await self._redis.unlink(self.key(execution_id))  # frees a big set off-thread

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _flags(answer: bytes | str, expected: int) -> list[bool]:
    text = answer.decode("ascii") if isinstance(answer, bytes) else answer
    if len(text) != expected:  # a receipt from someone else's call: never expected
        raise RuntimeError(f"add_new script answered {len(text)} flags for {expected} keys")
    return [flag == "1" for flag in text]
