"""How much of each backend one worker, and many, use; and which backend gives out first.

    python -m bench.capacity [--steps 1,2,4,8,16,32] [--small-steps 4,16] [--quick]
        [--concurrency 32] [--fetch-delay-ms 500] [--window-s 10] [--no-save] [--json PATH]
    python -m bench.capacity --render bench/results/capacity-<timestamp>.json

N simulated workers run in this process, each a real ``worker.runtime.Worker`` with its own
adapters as a worker process has them: its own Pub/Sub subscriber and publisher, its own
Redis clients, its own asyncpg pool through PgBouncer. They crawl a synthetic site
(bench/capacity_site.py: no network; every page after a fixed wait and a fixed spin of
CPU) through the whole task pipeline. Per step (1, 2, 4 ... workers) it records, over a
measured window:

- per backend, operations per second from the backend's own counters (Redis's INFO
  commandstats, PgBouncer's SHOW STATS, the queue adapters' Pub/Sub call counts);
- per call kind, p50 and p99 latency as the worker saw it (bench/capacity_timing.py), and
  the event loop's own lag, which every awaited call also pays;
- the CPU of the worker process (its event loop thread, and all of it), of redis-server,
  of the Postgres backends serving the run's database, of PgBouncer and of the Pub/Sub
  emulator, and how busy the machine was (bench/capacity_stats.py).

Two series: one execution (a site wide enough to keep every worker busy, a warm-up, then
a window), and many small executions started at once and run to completion. The report
(bench/capacity_report.py) names, per series, the first backend that saturated (its
latency climbed and so did its own figures) and says when a climb was the workers' own:
on 2 cores shared by the workers, the backends and other jobs, the machine's CPU runs out
early, and the report says which limit was hit. ``--render`` analyses a saved result again
without measuring.

Services: a redis-server and a PgBouncer of this run's own (so their counters and CPU are
this run's alone), a fresh database per step on the local Postgres, the Pub/Sub emulator
of the test suite with a project per step. Part files go to a local directory: GCS is not
part of what is measured. Results: bench/results/capacity-<timestamp>.json and
bench/results/capacity.md; docs/operations.md ("Capacity model") scales them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from backends.clock import SystemClock
from backends.local import LocalBlobStore
from backends.postgres import PostgresPool
from backends.redis import connect
from bench.capacity_report import analyse, cost_per_operation, markdown, per_page
from bench.capacity_site import SyntheticFetcher, workflow_text
from bench.capacity_stats import BackendSampler, Probe, Snapshot, window_figures
from bench.capacity_timing import (
    Latencies,
    LoopLag,
    TimedQueue,
    TimedRateLimiter,
    TimedSeenSet,
    TimedStateStore,
)
from tests.services import free_port
from tests.services.postgres import PgBouncer, create_database, drop_database
from tests.services.pubsub import PubSubNames, delete_project, unique_names, use_pubsub_emulator
from tests.services.redis import RedisServer
from trawl.distributed import FLOW_CONTROL_FACTOR
from trawl.settings import Settings
from worker.assemble import Ports
from worker.robots import RobotsCache
from worker.runtime import Worker, WorkerOptions
from worker.service import DrainIncomplete
from worker.start import start_execution, store_workflow
from workflows.load import load_workflow

RESULTS = Path(__file__).resolve().parent / "results"
TENANT = "capacity"
POLL_S = 0.2
STEP_OVERHEAD_S = 15.0  # a fresh database, Pub/Sub project and workers, then removing them

Scenario = Literal["one", "many"]


@dataclass(frozen=True)
class Config:
    """One run's shape; ``QUICK`` is the smoke test's."""

    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    small_steps: tuple[int, ...] = (4, 16)
    concurrency: int = 32  # tasks in flight per worker (TRAWL_WORKER_CONCURRENCY)
    fetch_delay_ms: float = 500.0  # a site's response time: 32 / 0.5 s = 64 pages/s a worker
    fetch_cpu_ms: float = 0.2  # what reading and decoding a response would cost
    width_factor: int = 2  # chains of the one-execution site per task in flight
    warmup_min_s: float = 1.0
    warmup_max_s: float = 20.0
    window_s: float = 10.0
    small_executions: int = 50
    small_pages: int = 100
    small_width: int = 16
    small_deadline_s: float = 150.0
    pgbouncer_pool: int = 20  # PgBouncer's server connections to the run's database
    budget_s: float = 570.0  # the whole run; steps that might not fit are skipped
    grace_s: float = 10.0  # a stopping worker's drain (transactions queued on Postgres)


QUICK = Config(
    steps=(1, 2),
    small_steps=(2,),
    concurrency=8,
    fetch_delay_ms=20.0,
    warmup_min_s=0.2,
    warmup_max_s=2.0,
    window_s=1.0,
    small_executions=3,
    small_pages=20,
    small_width=4,
    small_deadline_s=30.0,
)


@dataclass
class Env:
    """The services every step uses."""

    redis: RedisServer
    bouncer: PgBouncer
    blobs: Path
    latencies: Latencies

    @property
    def bouncer_pid(self) -> int:
        return int(self.bouncer.pidfile.read_text().strip())


@dataclass
class SimWorker:
    """One simulated worker process: its adapters and the worker over them."""

    worker: Worker
    ports: Ports
    queue: TimedQueue
    stack: contextlib.AsyncExitStack


async def _no_robots(url: str, user_agent: str) -> tuple[int, str]:
    """robots.txt of the synthetic site: none (a 404 means no rules)."""
    return 404, ""


async def open_worker(env: Env, cfg: Config, names: PubSubNames, dsn: str, index: int) -> SimWorker:
    """A worker with adapters of its own, as ``trawl worker`` opens them
    (trawl/distributed.py), timed (bench/capacity_timing.py)."""
    settings = Settings()
    lat = env.latencies
    stack = contextlib.AsyncExitStack()
    try:
        queue = TimedQueue(
            names.project,
            names.topic,
            names.subscription,
            concurrency=cfg.concurrency * FLOW_CONTROL_FACTOR,
            ack_deadline_s=settings.pubsub_ack_deadline_s,
            latencies=lat,
        )
        stack.push_async_callback(queue.close)
        prefix = settings.redis_prefix.rstrip(":") + ":"
        seen = TimedSeenSet(
            connect(env.redis.url),
            prefix=prefix,
            ttl_s=settings.seen_ttl_s,
            owns_client=True,
            latencies=lat,
        )
        stack.push_async_callback(seen.close)
        limiter = TimedRateLimiter(
            connect(env.redis.url), prefix=prefix, owns_client=True, latencies=lat
        )
        stack.push_async_callback(limiter.close)
        pool = await PostgresPool.connect(dsn, max_size=settings.database_pool_size)
        state = TimedStateStore(pool, counter_shards=settings.counter_shards, latencies=lat)
        stack.push_async_callback(state.close)
    except BaseException:
        await stack.aclose()
        raise
    ports = Ports(
        queue=queue, seen=seen, limiter=limiter, state=state, blobs=LocalBlobStore(env.blobs)
    )
    fetcher = SyntheticFetcher(delay_s=cfg.fetch_delay_ms / 1000, cpu_s=cfg.fetch_cpu_ms / 1000)
    worker = Worker(
        ports,
        fetchers={"http": fetcher},
        robots=RobotsCache(_no_robots, SystemClock()),
        options=WorkerOptions(
            worker_id=f"capacity-{index}", concurrency=cfg.concurrency, grace_s=cfg.grace_s
        ),
    )
    return SimWorker(worker, ports, queue, stack)


def calls(sims: list[SimWorker]) -> dict[str, int]:
    """The workers' Pub/Sub calls so far, summed (acks: pages finished)."""
    total: Counter[str] = Counter()
    for sim in sims:
        total.update(sim.queue.calls)
    return dict(total)


def check_alive(tasks: list[asyncio.Task[None]]) -> None:
    """Raise what stopped a worker, if one stopped."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"{task.get_name()} stopped: {task.exception()!r}")


async def wait_until(
    done: Callable[[], bool | Awaitable[bool]],
    tasks: list[asyncio.Task[None]],
    *,
    deadline_s: float,
    at_least_s: float = 0.0,
) -> bool:
    """Poll ``done()`` (sync or async) until it is true (True) or ``deadline_s`` passes
    (False), failing early if a worker stops; never before ``at_least_s``."""
    started = time.monotonic()
    while True:
        check_alive(tasks)
        elapsed = time.monotonic() - started
        if elapsed >= at_least_s:
            answer = done()
            if not isinstance(answer, bool):
                answer = await answer
            if answer:
                return True
        if elapsed >= deadline_s:
            return False
        await asyncio.sleep(POLL_S)


async def submit(ports: Ports, name: str, *, width: int, max_pages: int) -> str:
    """Store and start one execution of the synthetic site; its id."""
    workflow = load_workflow(workflow_text(name, width=width, max_pages=max_pages))
    version = await store_workflow(ports.state, TENANT, workflow)
    execution = await start_execution(ports, workflow, tenant=TENANT, version=version)
    return execution.id


async def completed(probe: Probe, ids: list[str]) -> int:
    """How many of ``ids`` have completed (read directly, outside PgBouncer's counts)."""
    rows = await probe.fetch(
        "SELECT status, count(*) AS n FROM executions WHERE id = ANY($1::text[]) GROUP BY 1", ids
    )
    statuses = {r["status"]: int(r["n"]) for r in rows}
    if statuses.get("failed"):
        raise RuntimeError(f"{statuses['failed']} executions failed")
    return statuses.get("completed", 0)


@dataclass
class Step:
    """One step: ``workers`` simulated workers over one database and Pub/Sub project."""

    env: Env
    cfg: Config
    scenario: Scenario
    workers: int
    probe: Probe
    sims: list[SimWorker]
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # Set when the measured window ends: Postgres backends are sampled until then.
    sampling: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    sampling_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.sampler = BackendSampler(self.probe)

    async def submit(self) -> tuple[list[str], int]:
        """Start the step's executions (before any worker pulls); their ids and width."""
        cfg, first = self.cfg, self.sims[0].ports
        if self.scenario == "one":
            width = cfg.width_factor * self.workers * cfg.concurrency
            return [await submit(first, f"one-{self.workers}", width=width, max_pages=0)], width
        names = [f"small-{n}" for n in range(cfg.small_executions)]
        width, pages = cfg.small_width, cfg.small_pages
        return [await submit(first, n, width=width, max_pages=pages) for n in names], width

    def acks(self) -> int:
        return calls(self.sims).get("acks", 0)

    async def snapshot(self) -> Snapshot:
        return await self.probe.snapshot(calls(self.sims))

    async def window(self, ids: list[str], width: int) -> tuple[Snapshot, Snapshot, int, bool]:
        """Run the workers and measure: one execution after its warm-up for a fixed window;
        many from the workers' start to the last completion. (start, end, completed, whether
        the warm-up finished the fan-out: ``width`` pages done, one new page per page after)."""
        cfg = self.cfg
        if self.scenario == "one":
            self.start_workers()
            warm = await wait_until(
                lambda: self.acks() >= width,
                self.tasks,
                deadline_s=cfg.warmup_max_s,
                at_least_s=min(cfg.warmup_min_s, cfg.warmup_max_s),
            )
            start = await self.snapshot()
            self.start_recording()
            await wait_until(lambda: False, self.tasks, deadline_s=cfg.window_s)
            return start, await self.snapshot(), 0, warm
        start = await self.snapshot()
        self.start_recording()
        self.start_workers()
        done = 0

        async def all_done() -> bool:
            nonlocal done
            done = await completed(self.probe, ids)
            return done == len(ids)

        await wait_until(all_done, self.tasks, deadline_s=cfg.small_deadline_s)
        return start, await self.snapshot(), done, True

    def start_recording(self) -> None:
        """The window starts: call latencies and Postgres backends' states from now on."""
        self.env.latencies.start()
        self.sampling_task = asyncio.create_task(self.sampler.run(self.sampling))

    async def stop_recording(self) -> dict[str, dict[str, float]]:
        """The window ends: the latencies; the backends' states are in ``sampler``."""
        self.sampling.set()
        if self.sampling_task is not None:
            await self.sampling_task
        return self.env.latencies.stop()

    def start_workers(self) -> None:
        self.tasks = [
            asyncio.create_task(s.worker.run(self.stop), name=f"worker {i}")
            for i, s in enumerate(self.sims)
        ]

    async def stop_workers(self) -> str:
        """Stop every worker (each drains within its grace period); "clean", or what a
        drain that ran out of time said. A worker that failed otherwise raises."""
        if not self.tasks:
            return "clean"
        self.stop.set()
        outcomes = await asyncio.gather(*self.tasks, return_exceptions=True)
        drains = [str(o) for o in outcomes if isinstance(o, DrainIncomplete)]
        failures = [
            o
            for o in outcomes
            if isinstance(o, BaseException) and not isinstance(o, DrainIncomplete)
        ]
        if failures:
            raise RuntimeError(f"a worker failed: {failures[0]!r}") from failures[0]
        return drains[0] if drains else "clean"

    async def run(self) -> dict[str, Any]:
        """The step's figures."""
        await self.sims[0].queue.ensure_resources()
        ids, width = await self.submit()
        lag_stop = asyncio.Event()
        lag = asyncio.create_task(LoopLag(self.env.latencies).run(lag_stop))
        try:
            start, end, done, warm = await self.window(ids, width)
            latency = await self.stop_recording()
        finally:
            lag_stop.set()
            self.sampling.set()
            try:
                drain = await self.stop_workers()
            finally:
                await asyncio.gather(lag, *filter(None, [self.sampling_task]))
        pages = end.extra.get("acks", 0) - start.extra.get("acks", 0)
        figures = window_figures(start, end, pages)
        figures["postgres"]["backends_by_state"] = self.sampler.averages()
        return {
            "scenario": self.scenario,
            "workers": self.workers,
            "width": width,
            "executions": len(ids),
            "completed": done,
            "warmed_up": warm,
            **figures,
            "latency": latency,
            "drain": drain,
        }


async def measure(env: Env, cfg: Config, scenario: Scenario, workers: int) -> dict[str, Any]:
    """One step in namespaces of its own: a fresh database, a Pub/Sub project, an empty
    Redis; all removed afterwards."""
    database = await asyncio.to_thread(create_database)
    names = unique_names()
    dsn = env.bouncer.dsn(database.name)
    try:
        probe = await Probe.open(
            redis_url=env.redis.url,
            pgbouncer_port=env.bouncer.port,
            pgbouncer_pid=env.bouncer_pid,
            database=database.name,
            database_dsn=database.direct_dsn,
        )
        opened = await asyncio.gather(
            *(open_worker(env, cfg, names, dsn, i) for i in range(workers)),
            return_exceptions=True,
        )
        sims = [o for o in opened if isinstance(o, SimWorker)]
        try:
            errors = [o for o in opened if isinstance(o, BaseException)]
            if errors:
                raise RuntimeError(f"could not open a worker's adapters: {errors[0]!r}")
            return await Step(env, cfg, scenario, workers, probe, sims).run()
        finally:
            await asyncio.gather(*(s.stack.aclose() for s in sims), return_exceptions=True)
            await probe.close()
    finally:
        await asyncio.to_thread(delete_project, names.project)
        await asyncio.to_thread(drop_database, database)
        client = connect(env.redis.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()


def summary_line(step: dict[str, Any]) -> str:
    """One line of progress per step, on stderr."""
    return (
        f"{step['scenario']:>4} x{step['workers']:<3} {step['pages_per_s']:>7} pages/s  "
        f"loop {step['worker']['loop_cpu_pct']:>5}%  machine {step['machine']['busy_pct']:>5}%  "
        f"redis {step['redis']['commands_per_s']:>8}/s  "
        f"pg {step['postgres']['xacts_per_s']:>6} xacts/s  "
        f"pubsub {step['pubsub']['published_per_s']:>7} msgs/s  drain {step['drain']}"
    )


def worst_case_s(cfg: Config, scenario: Scenario) -> float:
    """The longest a step of ``scenario`` can take: its deadlines, the drain, and setting
    up and removing its database, project and workers."""
    running = cfg.warmup_max_s + cfg.window_s if scenario == "one" else cfg.small_deadline_s
    return running + cfg.grace_s + STEP_OVERHEAD_S


async def run(cfg: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Every step of both series, over services started for the run; a step that might
    not end within the run's budget is skipped and named."""
    started = time.monotonic()
    skipped: list[str] = []
    use_pubsub_emulator()
    bouncer = PgBouncer.create(free_port(), pool_size=cfg.pgbouncer_pool)
    bouncer.start()
    one: list[dict[str, Any]] = []
    many: list[dict[str, Any]] = []
    try:
        with RedisServer() as redis, tempfile.TemporaryDirectory(prefix="capacity-") as blobs:
            env = Env(redis, bouncer, Path(blobs), Latencies())
            series: list[tuple[Scenario, tuple[int, ...], list[dict[str, Any]]]] = [
                ("one", cfg.steps, one),
                ("many", cfg.small_steps, many),
            ]
            for scenario, steps, out in series:
                for workers in steps:
                    if time.monotonic() - started + worst_case_s(cfg, scenario) > cfg.budget_s:
                        skipped.append(f"{scenario} x{workers}")
                        continue
                    step = await measure(env, cfg, scenario, workers)
                    print(summary_line(step), file=sys.stderr, flush=True)
                    out.append(step)
    finally:
        bouncer.stop()
    return one, many, skipped


def tree_state() -> dict[str, Any]:
    """The commit measured and the files changed on top of it (read-only git calls)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    # Porcelain lines are "XY path": two status letters and a space before the path.
    modified = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD").strip() or "unknown", "modified": modified}


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of worker counts, not {text!r}"
        ) from None
    if not steps or any(n < 1 for n in steps) or list(steps) != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1 and increasing: {text!r}")
    return steps


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=(__doc__ or "").split("\n", 1)[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test: seconds, not saved")
    parser.add_argument("--steps", type=parse_steps, help="workers per step, one execution")
    parser.add_argument("--small-steps", type=parse_steps, help="workers per step, many small")
    parser.add_argument("--no-small", action="store_true", help="skip the many-small series")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--fetch-delay-ms", type=float)
    parser.add_argument("--fetch-cpu-ms", type=float)
    parser.add_argument("--window-s", type=float)
    parser.add_argument("--warmup-max-s", type=float)
    parser.add_argument("--small-executions", type=int)
    parser.add_argument("--small-pages", type=int)
    parser.add_argument("--pgbouncer-pool", type=int)
    parser.add_argument("--budget-s", type=float, help="skip steps that might end later")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, help="also write the whole result here")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULT_JSON",
        help="measure nothing: analyse a saved result again and print its report",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("steps", args.steps),
            ("small_steps", args.small_steps),
            ("concurrency", args.concurrency),
            ("fetch_delay_ms", args.fetch_delay_ms),
            ("fetch_cpu_ms", args.fetch_cpu_ms),
            ("window_s", args.window_s),
            ("warmup_max_s", args.warmup_max_s),
            ("small_executions", args.small_executions),
            ("small_pages", args.small_pages),
            ("pgbouncer_pool", args.pgbouncer_pool),
            ("budget_s", args.budget_s),
        )
        if value is not None
    }
    if args.no_small:
        changes["small_steps"] = ()
    for name in ("concurrency", "small_executions", "small_pages", "pgbouncer_pool"):
        if name in changes and changes[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, not {changes[name]}")
    for name in ("fetch_delay_ms", "fetch_cpu_ms", "window_s", "warmup_max_s", "budget_s"):
        if name in changes and changes[name] < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, not {changes[name]}")
    return dataclasses.replace(cfg, **changes), args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    if args.render is not None:
        print(markdown(reanalysed(json.loads(args.render.read_text()))))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = shlex.join(
        ["python", "-m", "bench.capacity", *(sys.argv[1:] if argv is None else argv)]
    )
    load_before = round(os.getloadavg()[0], 2)
    started = time.monotonic()
    one, many, skipped = asyncio.run(run(cfg))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "stamp": stamp,
        "command": command,
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": {"cores": os.cpu_count() or 1, "load_before": load_before},
        "tree": tree_state(),
        "config": dataclasses.asdict(cfg),
        "one_execution": one,
        "many_small": many,
        "skipped": skipped,
        "analysis": analysis(one, many),
    }
    report = markdown(result)
    print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not (args.no_save or args.quick):
        save(result, report)
    return 0


def reanalysed(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its analysis made again from its steps (after the analysis changed)."""
    one, many = result["one_execution"], result["many_small"]
    return {**result, "analysis": analysis(one, many)}


def analysis(one: list[dict[str, Any]], many: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdicts, cost per operation and operations per page of both series."""
    return {
        "one_execution": analyse(one),
        "many_small": analyse(many),
        "cost": cost_per_operation(one),
        "per_page": {"one_execution": per_page(one), "many_small": per_page(many)},
    }


def save(result: dict[str, Any], report: str) -> None:
    """bench/results/capacity-<stamp>.json (everything) and capacity.md (the report)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"capacity-{result['stamp']}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "capacity.md").write_text(report + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
