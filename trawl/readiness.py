"""What ``/readyz`` checks: everything a process needs to do its job, not just a ping.

- ``gcs``: the bucket exists and takes a write and a delete of a small probe object;
- ``pubsub``: the pull subscription exists (a worker) or the topic does (the orchestrator);
- ``postgres``: the schema has every packaged migration (the missing ones are named);
- ``redis``: a command is answered.

Each result is kept for a few seconds (failures for less), so a platform polling /readyz
costs the backends little; a slow check keeps running in the background while callers
time out on it, so polls never pile up threads.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from backends.errors import PermanentError
from backends.gcp.gcs import GcsBlobStore
from backends.gcp.pubsub import PubSubTaskQueue
from backends.postgres.migrate import missing_migrations
from backends.postgres.pool import PostgresPool
from worker.assemble import Ports

Check = Callable[[], Awaitable[None]]
Role = Literal["worker", "orchestrator"]

OK_TTL_S = 5.0
FAILED_TTL_S = 1.0
PROBE_DIR = "_trawl-readyz"


class CachedCheck:
    """``check`` run at most once per ``ok_ttl_s`` (``failed_ttl_s`` after a failure)."""

    def __init__(
        self, check: Check, *, ok_ttl_s: float = OK_TTL_S, failed_ttl_s: float = FAILED_TTL_S
    ) -> None:
        self._check = check
        self._ok_ttl_s = ok_ttl_s
        self._failed_ttl_s = failed_ttl_s
        self._until = 0.0
        self._error: Exception | None = None
        self._running: asyncio.Task[None] | None = None

    async def __call__(self) -> None:
        if time.monotonic() >= self._until:
            if self._running is None or self._running.done():
                self._running = asyncio.create_task(self._refresh())
            await asyncio.shield(self._running)
        if self._error is not None:
            raise self._error.with_traceback(None)  # the same error again, not a longer one

    async def _refresh(self) -> None:
        try:
            await self._check()
        except Exception as exc:
            self._error = exc
            self._until = time.monotonic() + self._failed_ttl_s
        else:
            self._error = None
            self._until = time.monotonic() + self._ok_ttl_s


def readiness_checks(
    ports: Ports,
    role: Role = "orchestrator",
    names: Sequence[str] = ("postgres", "redis", "pubsub", "gcs"),
) -> dict[str, Check]:
    """One check per backend ``role`` needs, cached, for /readyz and a worker's start."""
    probe = f"{PROBE_DIR}/{role}-{uuid.uuid4().hex[:12]}"

    async def postgres() -> None:
        pool = getattr(ports.state, "pool", None)
        if not isinstance(pool, PostgresPool):
            await ports.state.get_execution("readyz-probe")
            return
        missing = await missing_migrations(pool)
        if missing:
            raise PermanentError(
                f"the database schema lacks migration(s) {', '.join(missing)}; run `trawl migrate`",
                error_class="database_schema",
            )

    async def redis() -> None:
        await ports.seen.discard("readyz-probe", ["probe"])

    async def pubsub() -> None:
        if isinstance(ports.queue, PubSubTaskQueue):
            await ports.queue.check_exists(subscription=role == "worker")

    async def gcs() -> None:
        if isinstance(ports.blobs, GcsBlobStore):
            await ports.blobs.check_writable(probe)
        else:
            await ports.blobs.exists(probe)

    checks: dict[str, Check] = {
        "postgres": postgres,
        "redis": redis,
        "pubsub": pubsub,
        "gcs": gcs,
    }
    return {name: CachedCheck(checks[name]) for name in names}
