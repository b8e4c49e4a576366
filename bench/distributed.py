"""Distributed mode: pages/s for 1, 2 and 3 ``trawl worker`` processes, and backend round
trips per page, so the capacity of a large deployment can be worked out on paper.

    python -m bench.distributed [--pages 2000] [--workers 1,2,3] [--concurrency 32]
        [--work DIR] [--no-save]

Results: bench/results/distributed-<timestamp>.json and bench/results/distributed.md (the
table docs/operations.md sizes a deployment from); ``--no-save`` only prints them.

The site is the generated documentation site of bench/docsite.py served by nginx; the
backends are the local services of the test suite (Postgres behind a PgBouncer of this run's
own, a Redis server of this run's own, the Pub/Sub and GCS emulators), each run in fresh
namespaces. Round trips are counted where they happen:

- Redis: the server's own command statistics (INFO commandstats), every command;
- Postgres: PgBouncer's SHOW STATS for the run's database (queries and transactions);
- Pub/Sub: the workers' queue adapters (publish calls, messages received, acks), which
  they log when they stop. The client library batches acks and lease extensions further.

On 2 cores the workers share the CPU with nginx, Postgres, Redis and the Java emulator, so
more processes add little here; the per-page round trips are what scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis

from bench.docsite import generate
from bench.serve import SiteServer
from tests.cluster import Cluster, cluster_env, completed, wait_for_execution
from tests.services import free_port
from tests.services.gcs import use_gcs_emulator
from tests.services.postgres import HOST, USER, PgBouncer, create_database, drop_database
from tests.services.pubsub import use_pubsub_emulator
from tests.services.redis import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
WORKFLOW = """\
name: bench-distributed
start_urls: [{start}]
engine: http
max_depth: 1000000
politeness:
  requests_per_second: 100000
  burst: 100000
  max_concurrency_per_host: 256
  respect_robots_txt: false
retries: {{max_attempts: 2, backoff_s: 0.1}}
phases:
  - name: page
    nodes:
      - type: extract
        fields: {{title: title}}
      - type: extract_links
"""


# Commands a worker sends; the rest of commandstats (HSETNX, HGET, ZADD...) run inside the
# Lua scripts of one EVALSHA and cost no round trip.
CLIENT_COMMANDS = {"evalsha", "eval", "script|load", "hdel", "zrem", "unlink", "ping"}


def redis_calls(url: str) -> int:
    """Round trips the server has answered so far (commands sent by clients)."""
    client = Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") in CLIENT_COMMANDS
    )


def pgbouncer_stats(bouncer: PgBouncer, database: str) -> dict[str, int]:
    out = subprocess.run(
        [
            "psql",
            "-h",
            HOST,
            "-p",
            str(bouncer.port),
            "-U",
            USER,
            "-d",
            "pgbouncer",
            "-A",
            "-F",
            "\t",
            "-c",
            "SHOW STATS",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    header = out[0].split("\t")
    for line in out[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row.get("database") == database:
            return {"queries": int(row["total_query_count"]), "xacts": int(row["total_xact_count"])}
    return {"queries": 0, "xacts": 0}


def pubsub_calls(cluster: Cluster) -> dict[str, int]:
    totals: dict[str, int] = {}
    for n in range(len(cluster.workers)):
        for line in cluster.worker_log(n).splitlines():
            if '"worker stopped"' in line:
                for key, value in json.loads(line).get("pubsub_calls", {}).items():
                    totals[key] = totals.get(key, 0) + int(value)
    return totals


@dataclass(frozen=True)
class Services:
    bouncer: PgBouncer
    redis: RedisServer
    pubsub: str
    gcs: str


async def one_run(
    workers: int, *, concurrency: int, start: str, work: Path, pages: int, services: Services
) -> dict[str, Any]:
    bouncer, redis = services.bouncer, services.redis
    database = create_database()
    dsn = database.dsn.replace(":6432/", f":{bouncer.port}/")
    try:
        with cluster_env(
            database_url=dsn,
            redis_url=redis.url,
            pubsub_host=services.pubsub,
            gcs_endpoint=services.gcs,
            logs=work / f"logs-{workers}",
            TRAWL_WORKER_CONCURRENCY=str(concurrency),
            TRAWL_LOG_FORMAT="json",
        ) as cluster:
            workflow = work / "workflow.yaml"
            workflow.write_text(WORKFLOW.format(start=start))
            execution_id = cluster.submit(workflow)
            redis_before = redis_calls(redis.url)
            pg_before = pgbouncer_stats(bouncer, database.name)
            started = time.monotonic()
            for _ in range(workers):
                cluster.start_worker()
            execution, progress = await wait_for_execution(
                cluster, execution_id, until=completed, deadline_s=1800, every_s=0.2
            )
            elapsed = time.monotonic() - started
            redis_after = redis_calls(redis.url)
            pg_after = pgbouncer_stats(bouncer, database.name)
            cluster.stop_workers()
            pubsub_totals = pubsub_calls(cluster)
        done = progress.finished
        return {
            "workers": workers,
            "status": execution.status,
            "pages": done,
            "expected_pages": pages,
            "seconds": round(elapsed, 2),
            "pages_per_s": round(done / elapsed, 1),
            "redis_per_page": round((redis_after - redis_before) / done, 3),
            "postgres_queries_per_page": round(
                (pg_after["queries"] - pg_before["queries"]) / done, 3
            ),
            "postgres_xacts_per_page": round((pg_after["xacts"] - pg_before["xacts"]) / done, 3),
            "pubsub_per_page": {k: round(v / done, 3) for k, v in sorted(pubsub_totals.items())},
        }
    finally:
        drop_database(database)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | pages | s | pages/s | Redis cmds/page | Postgres queries/page "
        "| Postgres xacts/page | Pub/Sub publish calls/page | acks/page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["pubsub_per_page"]
        lines.append(
            f"| {r['workers']} | {r['pages']} | {r['seconds']} | {r['pages_per_s']} "
            f"| {r['redis_per_page']} | {r['postgres_queries_per_page']} "
            f"| {r['postgres_xacts_per_page']} | {p.get('publish_calls', 0)} "
            f"| {p.get('acks', 0)} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    site = generate(args.pages)
    pubsub = use_pubsub_emulator()
    gcs = use_gcs_emulator()
    work = Path(args.work)
    bouncer = PgBouncer.create(free_port(), pool_size=20)
    bouncer.start()
    rows = []
    try:
        with SiteServer(site.root) as server, RedisServer() as redis:
            start = f"{server.base_url}/index.html"
            for workers in args.workers:
                row = await one_run(
                    workers,
                    concurrency=args.concurrency,
                    start=start,
                    work=work,
                    pages=site.pages,
                    services=Services(bouncer, redis, pubsub, gcs),
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        bouncer.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--work", default="/tmp/trawl-bench-distributed")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(main_async(args))
    md = table(rows)
    print(md)
    if not args.no_save:
        save(rows, md, pages=args.pages)


def save(rows: list[dict[str, Any]], md: str, *, pages: int) -> None:
    """Write the rows (JSON) and the table (distributed.md) under bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"distributed-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "distributed.md").write_text(
        f"# Distributed mode, {stamp}\n\n`python -m bench.distributed --pages {pages}`\n\n"
        + md
        + "\n"
    )


if __name__ == "__main__":
    main()
