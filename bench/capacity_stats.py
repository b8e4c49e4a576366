"""What the backends and the machine did during a measured window, from their own counters.

bench/capacity.py takes a ``Snapshot`` at the start and at the end of each window and
reports the difference:

- Redis: ``INFO commandstats`` (calls and server-side microseconds per command; the round
  trips are the commands clients send, ``CLIENT_COMMANDS``), and the CPU of the
  redis-server process (the run's own server, so every command is the run's);
- Postgres through PgBouncer: ``SHOW STATS`` for the run's database (queries,
  transactions, and the time PgBouncer saw them take on the server and clients wait for a
  server connection), the CPU of the Postgres backends serving that database (found in
  ``pg_stat_activity``) and of the run's own PgBouncer;
- Pub/Sub: the emulator's CPU (a shared daemon: other sessions' use shows too);
- the worker process: the event loop thread's CPU (``time.thread_time`` in the loop) and
  the whole process's (the Pub/Sub client's threads included);
- the machine: busy share of every core (``/proc/stat``) and the load average.

CPU comes from ``/proc/<pid>/stat`` (user + system), so this runs on Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.distributed import CLIENT_COMMANDS

_CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKEND_STATES = ("running", "locks", "client", "other")
PGBOUNCER_FIELDS = ("total_query_count", "total_xact_count", "total_query_time",
                    "total_xact_time", "total_wait_time")  # fmt: skip


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def pids_matching(*needles: str, comm: str | None = None) -> list[int]:
    """Processes whose command line contains every needle (and whose name is ``comm``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            name = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if all(n in cmdline for n in needles) and (comm is None or name == comm):
            found.append(int(entry.name))
    return sorted(found)


async def pgbouncer_stats(port: int, database: str) -> dict[str, int]:
    """PgBouncer's totals for ``database`` (zeros before its first query): query and
    transaction counts, and query, transaction and wait times in microseconds."""
    process = await asyncio.create_subprocess_exec(
        *("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "pgbouncer"),
        *("-A", "-F", "\t", "-c", "SHOW STATS"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"SHOW STATS on PgBouncer :{port} failed: {err.decode().strip()}")
    lines = out.decode().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row.get("database") == database:
            return {name: int(row[name]) for name in PGBOUNCER_FIELDS}
    return dict.fromkeys(PGBOUNCER_FIELDS, 0)


@dataclass
class Snapshot:
    """Every counter at one moment."""

    at: float  # time.monotonic()
    redis: dict[str, tuple[int, int]]  # command -> (calls, usec)
    redis_cpu_s: float
    pgbouncer: dict[str, int]
    pgbouncer_cpu_s: float
    postgres_cpu_s: dict[int, float]  # backend pid -> CPU seconds
    emulator_cpu_s: dict[int, float]
    loop_cpu_s: float
    process_cpu_s: float
    machine: tuple[int, int]
    load_1m: float
    extra: dict[str, int] = field(default_factory=dict)  # the workers' own counters


@dataclass
class Probe:
    """Where to read the counters: the run's Redis, PgBouncer, database and emulator."""

    redis: Redis
    redis_pid: int
    pgbouncer_port: int
    pgbouncer_pid: int
    database: str
    postgres: asyncpg.Connection[asyncpg.Record]  # direct to the run's database
    emulator_pids: list[int]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    async def open(
        cls,
        *,
        redis_url: str,
        pgbouncer_port: int,
        pgbouncer_pid: int,
        database: str,
        database_dsn: str,
    ) -> Probe:
        """``database_dsn``: ``database`` on Postgres itself, not through PgBouncer (the
        probe's own queries stay out of PgBouncer's counts)."""
        redis = Redis.from_url(redis_url)
        info = await redis.info("server")
        postgres = await asyncpg.connect(database_dsn, statement_cache_size=0)
        return cls(
            redis=redis,
            redis_pid=int(info["process_id"]),
            pgbouncer_port=pgbouncer_port,
            pgbouncer_pid=pgbouncer_pid,
            database=database,
            postgres=postgres,
            emulator_pids=pids_matching("cloud-pubsub-emulator", comm="java"),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.postgres.close()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """``query`` on the probe's own connection, one at a time (the backend sampler and
        the snapshots share it)."""
        async with self.lock:
            return await self.postgres.fetch(query, *args)

    async def backend_states(self) -> Counter[str]:
        """What the run's Postgres backends are doing now, by ``backend_state``."""
        rows = await self.fetch(
            "SELECT state, wait_event_type FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle'",
            self.database,
        )
        return Counter(backend_state(r["state"], r["wait_event_type"]) for r in rows)

    async def snapshot(self, extra: dict[str, int] | None = None) -> Snapshot:
        """Every counter now; ``extra`` are the caller's (the workers' Pub/Sub calls)."""
        stats = await self.redis.info("commandstats")
        redis = {
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()
        }
        bouncer = await pgbouncer_stats(self.pgbouncer_port, self.database)
        rows = await self.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        backends = {r["pid"]: process_cpu_s(r["pid"]) for r in rows}
        emulator = {pid: process_cpu_s(pid) for pid in self.emulator_pids}
        times = os.times()
        return Snapshot(
            at=time.monotonic(),
            redis=redis,
            redis_cpu_s=process_cpu_s(self.redis_pid) or 0.0,
            pgbouncer=bouncer,
            pgbouncer_cpu_s=process_cpu_s(self.pgbouncer_pid) or 0.0,
            postgres_cpu_s={pid: cpu for pid, cpu in backends.items() if cpu is not None},
            emulator_cpu_s={pid: cpu for pid, cpu in emulator.items() if cpu is not None},
            loop_cpu_s=time.thread_time(),  # called on the loop's thread
            process_cpu_s=times.user + times.system,
            machine=machine_jiffies(),
            load_1m=os.getloadavg()[0],
            extra=dict(extra or {}),
        )


def backend_state(state: str | None, wait_event_type: str | None) -> str:
    """A busy backend's state in words: ``running`` (on a CPU, or waiting for one),
    ``locks`` (a row or table lock another transaction holds), ``client`` (waiting for
    the worker's next statement, inside a transaction or not), ``other`` (I/O, internal
    locks, ...)."""
    if wait_event_type == "Lock":
        return "locks"
    if wait_event_type == "Client" or (state or "").startswith("idle in transaction"):
        return "client"
    if wait_event_type is None:
        return "running"
    return "other"


class BackendSampler:
    """Samples ``Probe.backend_states`` every ``interval_s`` during a window: how many of
    the run's Postgres backends were, on average, running, waiting on locks or waiting
    for their client. That tells a Postgres short of CPU from hot rows from slow workers."""

    def __init__(self, probe: Probe, interval_s: float = 0.25) -> None:
        self._probe = probe
        self._interval_s = interval_s
        self.totals: Counter[str] = Counter()
        self.samples = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.totals.update(await self._probe.backend_states())
            self.samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    def averages(self) -> dict[str, float]:
        """Backends in each state, on average over the samples."""
        if not self.samples:
            return {}
        return {
            state: round(self.totals.get(state, 0) / self.samples, 2) for state in BACKEND_STATES
        }


def _pct(cpu_s: float, seconds: float) -> float:
    """CPU seconds over wall seconds, as a percentage of one core."""
    return round(100 * cpu_s / seconds, 1) if seconds > 0 else 0.0


def _per(count: float, pages: int) -> float:
    return round(count / pages, 3) if pages else 0.0


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the processes used between two samples; one that appeared meanwhile counts
    from zero, one that ended is lost (PgBouncer keeps its server connections open)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def window_figures(start: Snapshot, end: Snapshot, pages: int) -> dict[str, Any]:
    """What each backend, the worker process and the machine did between two snapshots,
    as rates, per page and CPU (latencies are added by the caller)."""
    seconds = end.at - start.at
    calls = sum(
        end.redis.get(c, (0, 0))[0] - start.redis.get(c, (0, 0))[0] for c in CLIENT_COMMANDS
    )
    usec = sum(end.redis.get(c, (0, 0))[1] - start.redis.get(c, (0, 0))[1] for c in CLIENT_COMMANDS)
    redis_cpu = end.redis_cpu_s - start.redis_cpu_s
    b = {k: end.pgbouncer[k] - start.pgbouncer[k] for k in PGBOUNCER_FIELDS}
    queries, xacts = b["total_query_count"], b["total_xact_count"]
    postgres_cpu = _cpu_delta(start.postgres_cpu_s, end.postgres_cpu_s)
    bouncer_cpu = end.pgbouncer_cpu_s - start.pgbouncer_cpu_s
    worker = {k: end.extra.get(k, 0) - start.extra.get(k, 0) for k in end.extra}
    published = worker.get("published", 0)
    busy = end.machine[0] - start.machine[0]
    total = end.machine[1] - start.machine[1]
    process_cpu = end.process_cpu_s - start.process_cpu_s
    emulator_cpu = _cpu_delta(start.emulator_cpu_s, end.emulator_cpu_s)
    cores = os.cpu_count() or 1
    busy_pct = 100 * busy / total if total else 0.0
    ours = process_cpu + redis_cpu + postgres_cpu + bouncer_cpu + emulator_cpu
    return {
        "seconds": round(seconds, 2),
        "pages": pages,
        "pages_per_s": round(pages / seconds, 1) if seconds > 0 else 0.0,
        "redis": {
            "commands_per_s": round(calls / seconds, 1),
            "commands_per_page": _per(calls, pages),
            "server_us_per_command": round(usec / calls, 1) if calls else 0.0,
            "cpu_pct": _pct(redis_cpu, seconds),
            "cpu_us_per_command": round(redis_cpu * 1e6 / calls, 1) if calls else 0.0,
        },
        "postgres": {
            "queries_per_s": round(queries / seconds, 1),
            "xacts_per_s": round(xacts / seconds, 1),
            "queries_per_page": _per(queries, pages),
            "xacts_per_page": _per(xacts, pages),
            "avg_query_ms": round(b["total_query_time"] / queries / 1000, 3) if queries else 0.0,
            "avg_xact_ms": round(b["total_xact_time"] / xacts / 1000, 3) if xacts else 0.0,
            "avg_wait_ms": round(b["total_wait_time"] / xacts / 1000, 3) if xacts else 0.0,
            "cpu_pct": _pct(postgres_cpu, seconds),
            "cpu_us_per_xact": round(postgres_cpu * 1e6 / xacts, 1) if xacts else 0.0,
            "backends": len(end.postgres_cpu_s),
            "pgbouncer_cpu_pct": _pct(bouncer_cpu, seconds),
        },
        "pubsub": {
            "publish_calls_per_s": round(worker.get("publish_calls", 0) / seconds, 1),
            "published_per_s": round(worker.get("published", 0) / seconds, 1),
            "acks_per_s": round(worker.get("acks", 0) / seconds, 1),
            "publish_calls_per_page": _per(worker.get("publish_calls", 0), pages),
            "published_per_page": _per(worker.get("published", 0), pages),
            "acks_per_page": _per(worker.get("acks", 0), pages),
            "nacks_per_page": _per(worker.get("nacks", 0), pages),
            "bytes_per_message": round(worker.get("published_bytes", 0) / published)
            if published
            else 0,
            "emulator_cpu_pct": _pct(emulator_cpu, seconds),
        },
        "worker": {
            "loop_cpu_pct": _pct(end.loop_cpu_s - start.loop_cpu_s, seconds),
            "process_cpu_pct": _pct(process_cpu, seconds),
            "cpu_ms_per_page": round(process_cpu * 1000 / pages, 3) if pages else 0.0,
            "threads": threading_count(),
        },
        "machine": {
            "cores": cores,
            "busy_pct": round(busy_pct, 1),
            # What the run's processes (workers and backends) used, and what everything
            # else on the machine did meanwhile, both in % of one core.
            "run_cpu_pct": _pct(ours, seconds),
            "other_cpu_pct": round(max(0.0, busy_pct * cores - 100 * ours / seconds), 1)
            if seconds > 0
            else 0.0,
            "load_1m_end": round(end.load_1m, 2),
        },
    }


def threading_count() -> int:
    """Threads of this process (the Pub/Sub clients start several per worker)."""
    return len(os.listdir("/proc/self/task"))
