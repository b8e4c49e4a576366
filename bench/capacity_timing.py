"""Latency of the backend calls a worker makes, timed where the worker makes them.

bench/capacity.py asks when a backend's latency "climbs", so it needs each call's duration
as the worker sees it: the real adapters, subclassed only to time their calls into one
``Latencies`` (every simulated worker of the process shares it; the kinds say which call).
What is timed is the adapter call from the worker's side, so it includes the event loop's
own delay in resuming the caller: ``LoopLag`` measures that delay separately, which is what
tells a slow backend from a busy worker.

Kinds: ``redis.seen_add`` (the seen-set's EVALSHA), ``redis.acquire`` and
``redis.release`` (the rate limiter's EVALSHA and ZREM), ``postgres.<method>`` (a
StateStore call, one statement or one short transaction through PgBouncer: the frontier's
``register_tasks``, the sink's ``finish_tasks`` and ``add_output``, ...), ``pubsub.publish``
(a batch published and confirmed), and ``worker.loop_lag``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from backends.gcp.pubsub import PubSubTaskQueue
from backends.postgres import PostgresStateStore
from backends.ratelimit import Grant, RatePolicy
from backends.redis import RedisRateLimiter, RedisSeenSet
from backends.state import Execution, OutputObject, Progress, Registered
from backends.task import Task, encode_task

T = TypeVar("T")

# A p99 needs this many samples to mean anything; fewer are reported but not judged.
MIN_SAMPLES = 50


class Latencies:
    """Durations by kind, kept only while ``recording`` (the measured window)."""

    def __init__(self) -> None:
        self.recording = False
        self._samples: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, kind: str, seconds: float) -> None:
        if self.recording:
            self._samples[kind].append(seconds)

    async def timed(self, kind: str, call: Awaitable[T]) -> T:
        """Await ``call``, adding how long it took (failed calls too)."""
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.add(kind, time.perf_counter() - started)

    def start(self) -> None:
        """Forget what was recorded and record from now on."""
        self._samples.clear()
        self.recording = True

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop recording; per kind: ``n``, ``p50_ms``, ``p99_ms``, ``max_ms``."""
        self.recording = False
        return {kind: summarize(values) for kind, values in sorted(self._samples.items())}


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, nearest rank."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
    }


class LoopLag:
    """How late the event loop wakes a sleeper: ``worker.loop_lag``, every ``interval_s``.
    A loop that has more ready callbacks than it can run resumes every awaiting call late,
    backend calls included."""

    def __init__(self, latencies: Latencies, interval_s: float = 0.01) -> None:
        self._latencies = latencies
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            if not stop.is_set():
                late = loop.time() - started - self._interval_s
                self._latencies.add("worker.loop_lag", max(0.0, late))


class TimedSeenSet(RedisSeenSet):
    """The Redis seen-set, its calls timed."""

    def __init__(self, *args: Any, latencies: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies = latencies

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        call = super().add_new(execution_id, keys, claimer=claimer)
        return await self.latencies.timed("redis.seen_add", call)


class TimedRateLimiter(RedisRateLimiter):
    """The Redis rate limiter, its calls timed."""

    def __init__(self, *args: Any, latencies: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies = latencies

    async def acquire(self, key: str, policy: RatePolicy) -> Grant:
        return await self.latencies.timed("redis.acquire", super().acquire(key, policy))

    async def release(self, key: str, lease_id: str | None) -> None:
        await self.latencies.timed("redis.release", super().release(key, lease_id))


class TimedStateStore(PostgresStateStore):
    """The Postgres StateStore, the calls of a worker's hot path timed (the task ledger,
    the output manifest, the execution reads of completion and the status check)."""

    def __init__(self, *args: Any, latencies: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies = latencies

    async def register_tasks(self, *args: Any, **kwargs: Any) -> Registered:
        call = super().register_tasks(*args, **kwargs)
        return await self.latencies.timed("postgres.register_tasks", call)

    async def finish_tasks(self, *args: Any, **kwargs: Any) -> int:
        call = super().finish_tasks(*args, **kwargs)
        return await self.latencies.timed("postgres.finish_tasks", call)

    async def release_tasks(self, *args: Any, **kwargs: Any) -> list[str]:
        call = super().release_tasks(*args, **kwargs)
        return await self.latencies.timed("postgres.release_tasks", call)

    async def add_output(self, execution_id: str, output: OutputObject) -> None:
        call = super().add_output(execution_id, output)
        await self.latencies.timed("postgres.add_output", call)

    async def progress(self, execution_id: str) -> Progress:
        return await self.latencies.timed("postgres.progress", super().progress(execution_id))

    async def get_execution(self, execution_id: str) -> Execution | None:
        call = super().get_execution(execution_id)
        return await self.latencies.timed("postgres.get_execution", call)

    async def lease_tasks(self, execution_id: str, keys: Sequence[str], until: datetime) -> int:
        call = super().lease_tasks(execution_id, keys, until)
        return await self.latencies.timed("postgres.lease_tasks", call)


class TimedQueue(PubSubTaskQueue):
    """The Pub/Sub queue, its publishes timed (acks are batched by the client in the
    background: their count is in ``calls``, they have no latency to time here), and the
    bytes of the tasks it publishes counted (``calls["published_bytes"]``: what Pub/Sub's
    throughput quotas are charged by)."""

    def __init__(self, *args: Any, latencies: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies = latencies

    async def publish(self, tasks: Sequence[Task]) -> None:
        self.calls["published_bytes"] += sum(len(encode_task(task)) for task in tasks)
        await self.latencies.timed("pubsub.publish", super().publish(tasks))
