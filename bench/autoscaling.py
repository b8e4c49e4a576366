"""Trawl's own part of the autoscaling loop, measured here (docs/operations.md, "Autoscaling"):

1. the ledger read behind ``trawl.queue.backlog`` (``TaskLedger.backlog`` over Postgres
   through PgBouncer, what one orchestrator runs every TRAWL_METRICS_INTERVAL_S): how long one
   read takes with E running executions, each with Q queued tasks and F finished ones (the
   finished ones must not make it slower: the read walks only queued rows);
2. a worker's start: from ``trawl worker`` launched to its ``/readyz`` answering 200 (Python
   started, backends checked, about to pull), against the local services. On Cloud Run an
   instance also waits for its image and its sidecars; that part is Google's, not measured.

    python -m bench.autoscaling [--executions 20] [--queued 1000] [--finished 20000]
        [--reads 50] [--starts 5] [--quick] [--no-save]

Results: bench/results/autoscaling-<timestamp>.json and bench/results/autoscaling.md;
``--no-save`` only prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from backends.clock import SystemClock
from backends.postgres import PostgresStateStore
from backends.state import Execution, TaskResult
from tests.cluster import cluster_env
from tests.services.gcs import use_gcs_emulator
from tests.services.postgres import TestDatabase, create_database, drop_database
from tests.services.pubsub import use_pubsub_emulator
from tests.services.redis import ensure_redis

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 1000  # keys per registration or finish, as a sink flush does at most a few hundred


async def fill(store: PostgresStateStore, *, executions: int, queued: int, finished: int) -> None:
    """``executions`` running executions, each with ``finished`` finished tasks and
    ``queued`` queued ones (registered, not finished)."""
    for e in range(executions):
        execution_id = f"bench-{e}"
        await store.create_execution(
            Execution(
                id=execution_id,
                workflow="bench",
                workflow_version=1,
                created_at=SystemClock().wall(),
            )
        )
        assert await store.transition(execution_id, "running", from_statuses=["pending"])
        keys = [f"http://127.0.0.1/{e}/{n}" for n in range(finished + queued)]
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            await store.register_tasks(execution_id, batch, payloads=batch)
        done = keys[:finished]
        for start in range(0, len(done), BATCH):
            results = [
                TaskResult(key=k, url=k, phase="page", depth=1, outcome="succeeded")
                for k in done[start : start + BATCH]
            ]
            await store.finish_tasks(execution_id, results)


async def backlog_reads(
    database: TestDatabase, *, executions: int, queued: int, finished: int, reads: int
) -> dict[str, Any]:
    store = await PostgresStateStore.from_url(database.dsn, max_size=2)
    try:
        started = time.monotonic()
        await fill(store, executions=executions, queued=queued, finished=finished)
        filled_s = time.monotonic() - started
        timings = []
        for _ in range(reads):
            before = time.perf_counter()
            backlog = await store.backlog()
            timings.append((time.perf_counter() - before) * 1000)
        assert backlog.queued == executions * queued, backlog
        assert backlog.running == executions, backlog
    finally:
        await store.close()
    return {
        "executions": executions,
        "queued_per_execution": queued,
        "finished_per_execution": finished,
        "task_rows": executions * (queued + finished),
        "fill_s": round(filled_s, 1),
        "reads": reads,
        "read_ms_min": round(min(timings), 2),
        "read_ms_median": round(statistics.median(timings), 2),
        "read_ms_max": round(max(timings), 2),
    }


async def ready(port: int, process: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    """Until the worker's /readyz answers 200."""
    deadline = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited with {process.returncode}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker was not ready within {deadline_s} s")
            await asyncio.sleep(0.02)


async def worker_starts(database: TestDatabase, starts: int, work: Path) -> dict[str, Any]:
    timings = []
    with cluster_env(
        database_url=database.dsn,
        redis_url=ensure_redis(),
        pubsub_host=use_pubsub_emulator(),
        gcs_endpoint=use_gcs_emulator(),
        logs=work / "logs",
    ) as cluster:
        for _ in range(starts):
            started = time.monotonic()
            process = cluster.start_worker()
            await ready(cluster.ports[-1], process)
            timings.append(time.monotonic() - started)
            cluster.stop_workers()
    return {
        "starts": starts,
        "first_s": round(timings[0], 2),  # creates the topics, subscription and bucket
        "ready_s_min": round(min(timings), 2),
        "ready_s_median": round(statistics.median(timings), 2),
        "ready_s_max": round(max(timings), 2),
    }


def report(result: dict[str, Any]) -> str:
    b, w = result["backlog"], result["worker_start"]
    return "\n".join(
        [
            "| measured | figure |",
            "|---|---|",
            f"| one backlog read ({b['executions']} running executions, {b['queued_per_execution']}"
            f" queued and {b['finished_per_execution']} finished tasks each, "
            f"{b['task_rows']} task rows) | median {b['read_ms_median']} ms "
            f"(min {b['read_ms_min']}, max {b['read_ms_max']}, {b['reads']} reads) |",
            f"| `trawl worker` launched to `/readyz` 200 ({w['starts']} starts) | median "
            f"{w['ready_s_median']} s (min {w['ready_s_min']}, max {w['ready_s_max']}; the first, "
            f"which creates the topic and subscription: {w['first_s']} s) |",
            "",
            f"Load average (1 min) before and after: {result['load_average'][0]}, "
            f"{result['load_average'][1]}, on {result['cpus']} CPUs.",
        ]
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    database = create_database()
    try:
        backlog = await backlog_reads(
            database,
            executions=args.executions,
            queued=args.queued,
            finished=args.finished,
            reads=args.reads,
        )
        print(json.dumps(backlog), flush=True)
        start = await worker_starts(database, args.starts, Path(args.work))
        print(json.dumps(start), flush=True)
    finally:
        drop_database(database)
    # The machine's load (other work on it slows both), over 1 minute, before and after.
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return {"backlog": backlog, "worker_start": start, "load_average": load, "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscaling")
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--finished", type=int, default=20000)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--work", default="/tmp/trawl-bench-autoscaling")
    parser.add_argument("--quick", action="store_true", help="a tiny run (a smoke test)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.executions, args.queued, args.finished, args.reads, args.starts = 2, 20, 50, 3, 1
    Path(args.work).mkdir(parents=True, exist_ok=True)
    result = asyncio.run(main_async(args))
    md = report(result)
    print(md)
    if not args.no_save:
        save(result, md, argv)
    return result


def save(result: dict[str, Any], md: str, argv: list[str] | None) -> None:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"autoscaling-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench.autoscaling", *args])
    (RESULTS / "autoscaling.md").write_text(
        f"# Autoscaling: Trawl's part, {stamp}\n\n`{command}`\n\n{md}\n"
    )


if __name__ == "__main__":
    main()
