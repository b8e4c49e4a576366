"""CPU per page: one ``trawl worker`` against ``trawl run`` on the same crawl.

    python -m bench.cpu_per_page [--pages 2000] [--runs 3] [--concurrency 32]
        [--only embedded|worker] [--worker-env K=V ...] [--work DIR] [--no-save]

Both crawl the generated documentation site of bench/docsite.py from nginx with the same
workflow (bench/crawlers.py's: http engine, title + every link, no politeness delay, 32
requests in flight): ``trawl run`` in one process over its memory and SQLite stores, and one
``trawl worker`` over the local services that bench/distributed.py uses (a PgBouncer and a
Redis server of this run's own, the Pub/Sub and GCS emulators; a fresh database, bucket and
topic per run). Runs are interleaved, the order swapped every round (E W, W E, ...), so a
change in the machine's load falls on both.

What is measured is the Trawl process alone: user + system CPU of that one process (every
thread of it: the Pub/Sub client's, the GCS uploads'), read from /proc every 10 ms and from
``wait4`` at its exit; never the emulators', the databases' or the server's. On 2 shared
cores wall time says more about the neighbours than about Trawl, CPU per page much less.

Two figures per run, both with the completeness check of bench/run.py (every page of the
site, each with its title, or the run is invalid):

- **crawl** (the one compared): CPU from the process's first connection to the site to the
  crawl's end (``trawl run``: its exit, after the export; the worker: the execution seen
  completed, export included), per page. What a page costs once the process is up.
- **whole**: the same from the process's start, interpreter start-up, imports and backend
  connections included. The worker imports the Google, gRPC, asyncpg and Redis clients
  (about a second of CPU) that ``trawl run`` never loads: a fixed cost per process, paid
  once in a worker's life of millions of pages, but a large share of 2,000.

The ratio is worker / embedded of the median crawl CPU per page (and of the minimum).
Results: bench/results/cpu-per-page-<timestamp>.json and bench/results/cpu-per-page.md;
what was changed in the worker to bring the ratio from 1.78 to about 1.05, and what each
change gave: bench/results/cpu-per-page-changes.md. ``--worker-env K=V`` passes a setting
to the worker (to try one); ``--only`` runs one kind (to compare two trees, say).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.crawlers import read_trawl, trawl_command
from bench.distributed import pgbouncer_stats, pubsub_calls, redis_calls
from bench.docsite import SiteInfo, generate
from bench.run import check_complete
from bench.serve import SiteServer
from tests.cluster import cluster_env, completed, wait_for_execution
from tests.services import free_port
from tests.services.gcs import delete_bucket, use_gcs_emulator
from tests.services.postgres import PgBouncer, create_database, drop_database
from tests.services.pubsub import delete_project, use_pubsub_emulator
from tests.services.redis import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("embedded", "worker")
GOAL_RATIO = 1.2
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
TCP_ESTABLISHED = "01"


# --- watching one process ------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads, living and ended); None when
    it is gone."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of each living thread of ``pid``, by kind: ``main`` (the event loop's
    thread), else the thread's name (gRPC's C threads name themselves; Python's threads are
    all ``python``)."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        cpu = _stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")
        if cpu is None:
            continue
        if int(tid) == pid:
            kind = "main"
        else:
            try:
                kind = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            except OSError:
                continue
        out[kind] = round(out.get(kind, 0.0) + cpu, 2)
    return out


def _stat_cpu_s(path: str) -> float | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (in parentheses) may hold spaces: fields are counted after it.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def connected_to(port: int) -> bool:
    """Whether any established IPv4 TCP connection has ``port`` as its remote port (only
    the crawler under test connects to the site's port)."""
    wanted = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[2].endswith(wanted) and parts[3] == TCP_ESTABLISHED:
                return True
    return False


@dataclass
class Watch:
    """Samples a process in a thread of this one: its CPU when it first connected to the
    site (its start-up), and its CPU and threads' CPU as last seen."""

    pid: int
    site_port: int
    interval_s: float = 0.01
    startup_cpu_s: float | None = None
    last_cpu_s: float = 0.0
    threads: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            cpu = process_cpu_s(self.pid)
            if cpu is None:
                return
            self.last_cpu_s = cpu
            if self.startup_cpu_s is None and connected_to(self.site_port):
                self.startup_cpu_s = cpu
            if tick % 10 == 0:
                threads = thread_cpu_s(self.pid)
                if threads:
                    self.threads = threads
            tick += 1
            self._stop.wait(self.interval_s)

    def snapshot(self) -> tuple[float, dict[str, float]]:
        """CPU seconds now, and by thread kind now."""
        cpu = process_cpu_s(self.pid)
        threads = thread_cpu_s(self.pid)
        return (cpu if cpu is not None else self.last_cpu_s), (threads or self.threads)


# --- one run of each kind ------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    site: SiteInfo
    base_url: str
    site_port: int
    concurrency: int
    work: Path
    bouncer: PgBouncer
    redis: RedisServer
    pubsub: str
    gcs: str
    worker_env: dict[str, str]


def run_embedded(setup: Setup, round_no: int) -> dict[str, Any]:
    """``trawl run`` over the whole site; its CPU from /proc while it runs and wait4 at exit."""
    work = Path(tempfile.mkdtemp(prefix="trawl-cpu-embedded-", dir=setup.work))
    try:
        argv, extra = trawl_command("http")(f"{setup.base_url}/index.html", work, setup.concurrency)
        env = {**os.environ, **extra, "PYTHONDONTWRITEBYTECODE": "1"}
        load = os.getloadavg()[0]
        started = time.monotonic()
        with (work / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            with Watch(proc.pid, setup.site_port) as watch:
                _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        total = usage.ru_utime + usage.ru_stime
        check = check_complete(read_trawl(work), setup.site.paths(), setup.base_url)
        reasons = _invalid(check, proc.returncode)
        if reasons:
            reasons.append((work / "stderr").read_text(errors="replace")[-2000:])
        return _figures(
            "embedded",
            round_no,
            setup.site.pages,
            wall_s=wall,
            total_s=total,
            startup_s=watch.startup_cpu_s,
            threads=watch.threads,
            load=load,
            check=check,
            reasons=reasons,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_worker(setup: Setup, round_no: int) -> dict[str, Any]:
    """One ``trawl worker`` crawling an execution submitted just before it starts; its CPU
    when the execution is seen completed (export written), then SIGTERM and wait4."""
    database = create_database()
    dsn = database.dsn.replace(":6432/", f":{setup.bouncer.port}/")
    work = Path(tempfile.mkdtemp(prefix="trawl-cpu-worker-", dir=setup.work))
    try:
        with cluster_env(
            database_url=dsn,
            redis_url=setup.redis.url,
            pubsub_host=setup.pubsub,
            gcs_endpoint=setup.gcs,
            logs=work / "logs",
            TRAWL_WORKER_CONCURRENCY=str(setup.concurrency),
            # The same fixed level as `trawl run --concurrency N`: CPU per page compared at
            # equal concurrency, not one autoscaled against one fixed.
            TRAWL_WORKER_AUTOSCALE="0",
            TRAWL_LOG_FORMAT="json",
            PYTHONDONTWRITEBYTECODE="1",
            **setup.worker_env,
        ) as cluster:
            try:
                argv, _ = trawl_command("http")(
                    f"{setup.base_url}/index.html", work, setup.concurrency
                )
                execution_id = cluster.submit(Path(argv[2]))
                redis_before = redis_calls(setup.redis.url)
                pg_before = pgbouncer_stats(setup.bouncer, database.name)
                load = os.getloadavg()[0]
                started = time.monotonic()
                worker = cluster.start_worker()
                with Watch(worker.pid, setup.site_port) as watch:
                    execution, progress = await wait_for_execution(
                        cluster, execution_id, until=completed, deadline_s=900, every_s=0.1
                    )
                    at_end, threads = watch.snapshot()
                wall = time.monotonic() - started
                redis_after = redis_calls(setup.redis.url)
                pg_after = pgbouncer_stats(setup.bouncer, database.name)
                worker.send_signal(signal.SIGTERM)
                _, status, usage = await asyncio.to_thread(os.wait4, worker.pid, 0)
                worker.returncode = os.waitstatus_to_exitcode(status)
                records = [
                    (r["url"], (r.get("data") or {}).get("title"))
                    for r in cluster.records(execution_id)
                ]
                check = check_complete(records, setup.site.paths(), setup.base_url)
                reasons = _invalid(check, worker.returncode)
                if execution.status != "completed":
                    reasons.append(f"execution {execution.status}")
                if reasons:
                    reasons.append(cluster.worker_log(0)[-2000:])
                done = max(progress.finished, 1)
                figures = _figures(
                    "worker",
                    round_no,
                    setup.site.pages,
                    wall_s=wall,
                    total_s=at_end,
                    startup_s=watch.startup_cpu_s,
                    threads=threads,
                    load=load,
                    check=check,
                    reasons=reasons,
                )
                figures["cpu_at_exit_s"] = round(usage.ru_utime + usage.ru_stime, 3)
                figures["round_trips_per_page"] = {
                    "redis": round((redis_after - redis_before) / done, 3),
                    "postgres_queries": round(
                        (pg_after["queries"] - pg_before["queries"]) / done, 3
                    ),
                    "postgres_xacts": round((pg_after["xacts"] - pg_before["xacts"]) / done, 3),
                    **{
                        f"pubsub_{k}": round(v / done, 3)
                        for k, v in sorted(pubsub_calls(cluster).items())
                    },
                }
                return figures
            finally:
                _clean_up(cluster.env)
    finally:
        drop_database(database)
        shutil.rmtree(work, ignore_errors=True)


def _clean_up(env: dict[str, str]) -> None:
    """The run's bucket and topics go, so the shared emulators do not grow."""
    from google.cloud import storage

    delete_project(env["TRAWL_PUBSUB_PROJECT"])
    client = storage.Client(project="trawl-local", credentials=_anonymous())
    try:
        delete_bucket(client, env["TRAWL_GCS_BUCKET"])
    finally:
        client.close()


def _anonymous() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def _invalid(check: dict[str, Any], returncode: int | None) -> list[str]:
    reasons = []
    if returncode != 0:
        reasons.append(f"exit code {returncode}")
    if check["missing"]:
        reasons.append(f"{check['missing']} pages missing")
    if check["untitled"]:
        reasons.append(f"{check['untitled']} pages without a title")
    return reasons


def _figures(
    kind: str,
    round_no: int,
    pages: int,
    *,
    wall_s: float,
    total_s: float,
    startup_s: float | None,
    threads: dict[str, float],
    load: float,
    check: dict[str, Any],
    reasons: list[str],
) -> dict[str, Any]:
    crawl_s = total_s - (startup_s or 0.0)
    main_s = threads.get("main", 0.0)
    return {
        "kind": kind,
        "round": round_no,
        "pages": pages,
        "valid": not reasons and startup_s is not None,
        "invalid_because": "; ".join(reasons) or (None if startup_s is not None else "no start"),
        "wall_s": round(wall_s, 2),
        "pages_per_s": round(pages / wall_s, 1),
        "cpu_whole_s": round(total_s, 3),
        "cpu_startup_s": round(startup_s or 0.0, 3),
        "cpu_crawl_s": round(crawl_s, 3),
        "cpu_ms_per_page": round(crawl_s / pages * 1000, 3),
        "cpu_ms_per_page_whole": round(total_s / pages * 1000, 3),
        "cpu_main_thread_s": main_s,
        "cpu_other_threads_s": round(max(total_s - main_s, 0.0), 2),
        "cpu_by_thread_s": threads,
        "loadavg_1m_before": round(load, 2),
        "check": check,
    }


# --- the comparison ------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: valid runs, min and median of CPU ms per page (crawl and whole), median
    pages/s; the ratios worker / embedded."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        valid = [r for r in runs if r["kind"] == kind and r["valid"]]
        row: dict[str, Any] = {
            "runs": sum(r["kind"] == kind for r in runs),
            "valid_runs": len(valid),
        }
        if valid:
            crawl = [r["cpu_ms_per_page"] for r in valid]
            whole = [r["cpu_ms_per_page_whole"] for r in valid]
            row |= {
                "cpu_ms_per_page_min": min(crawl),
                "cpu_ms_per_page_median": round(statistics.median(crawl), 3),
                "cpu_ms_per_page_whole_min": min(whole),
                "cpu_ms_per_page_whole_median": round(statistics.median(whole), 3),
                "cpu_startup_s_median": round(
                    statistics.median(r["cpu_startup_s"] for r in valid), 3
                ),
                "pages_per_s_median": round(statistics.median(r["pages_per_s"] for r in valid), 1),
            }
        out[kind] = row
    e, w = out["embedded"], out["worker"]
    if "cpu_ms_per_page_median" in e and "cpu_ms_per_page_median" in w:
        out["ratio_median"] = round(w["cpu_ms_per_page_median"] / e["cpu_ms_per_page_median"], 3)
        out["ratio_min"] = round(w["cpu_ms_per_page_min"] / e["cpu_ms_per_page_min"], 3)
        out["ratio_whole_median"] = round(
            w["cpu_ms_per_page_whole_median"] / e["cpu_ms_per_page_whole_median"], 3
        )
        out["goal_met"] = out["ratio_median"] <= GOAL_RATIO
    return out


def markdown(result: dict[str, Any]) -> str:
    """The report: the command, the summary with the ratio, then every run."""
    meta, summary = result["meta"], result["summary"]
    lines = [
        f"# CPU per page, `trawl worker` / `trawl run`, {meta['stamp']}",
        "",
        f"`{meta['command']}`",
        "",
        f"Site: {meta['pages']} pages (bench/docsite.py), nginx; {meta['concurrency']} requests "
        f"in flight, http engine. Machine: {meta['cpus']} CPUs, Python {meta['python']}; load "
        f"average {meta['loadavg_start']} at the start, {meta.get('loadavg_end', '?')} at the "
        "end (other work shares this machine). CPU: user + system of the Trawl process only.",
        "",
        "| process | valid runs | CPU ms/page (crawl), median | min | CPU ms/page (whole), "
        "median | start-up CPU s | pages/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        row = summary[kind]
        if "cpu_ms_per_page_median" not in row:
            lines.append(f"| {kind} | 0/{row['runs']} | - | - | - | - | - |")
            continue
        lines.append(
            f"| {kind} | {row['valid_runs']}/{row['runs']} | {row['cpu_ms_per_page_median']:.3f} "
            f"| {row['cpu_ms_per_page_min']:.3f} | {row['cpu_ms_per_page_whole_median']:.3f} "
            f"| {row['cpu_startup_s_median']:.2f} | {row['pages_per_s_median']:.1f} |"
        )
    if "ratio_median" in summary:
        met = "met" if summary["goal_met"] else "NOT met"
        lines += [
            "",
            f"**Ratio worker / embedded, CPU per page (crawl): {summary['ratio_median']:.3f} "
            f"(median), {summary['ratio_min']:.3f} (min); goal <= {GOAL_RATIO}: {met}.** "
            f"With start-up included: {summary['ratio_whole_median']:.3f}.",
        ]
    lines += [
        "",
        "| run | process | valid | CPU ms/page (crawl) | (whole) | start-up s | main thread s "
        "| other threads s | pages/s | load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['round']} | {r['kind']} | {'yes' if r['valid'] else 'no'} "
            f"| {r['cpu_ms_per_page']:.3f} | {r['cpu_ms_per_page_whole']:.3f} "
            f"| {r['cpu_startup_s']:.2f} | {r['cpu_main_thread_s']:.2f} "
            f"| {r['cpu_other_threads_s']:.2f} | {r['pages_per_s']:.1f} "
            f"| {r['loadavg_1m_before']:.2f} |"
        )
    return "\n".join(lines) + "\n"


@contextmanager
def services() -> Iterator[tuple[PgBouncer, RedisServer, str, str]]:
    """A PgBouncer and a Redis server of this run's own; the shared emulators."""
    pubsub = use_pubsub_emulator()
    gcs = use_gcs_emulator()
    bouncer = PgBouncer.create(free_port(), pool_size=20)
    bouncer.start()
    try:
        with RedisServer() as redis:
            yield bouncer, redis, pubsub, gcs
    finally:
        bouncer.stop()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    site = generate(args.pages)
    runs: list[dict[str, Any]] = []
    with SiteServer(site.root) as server, services() as (bouncer, redis, pubsub, gcs):
        setup = Setup(
            site=site,
            base_url=server.base_url,
            site_port=server.port,
            concurrency=args.concurrency,
            work=Path(args.work),
            bouncer=bouncer,
            redis=redis,
            pubsub=pubsub,
            gcs=gcs,
            worker_env=args.worker_env,
        )
        for round_no in range(1, args.runs + 1):
            order = list(args.kinds) if round_no % 2 else list(reversed(args.kinds))
            for kind in order:
                if kind == "embedded":
                    run = await asyncio.to_thread(run_embedded, setup, round_no)
                else:
                    run = await run_worker(setup, round_no)
                runs.append(run)
                print(_describe(run), file=sys.stderr, flush=True)
    return runs


def _describe(run: dict[str, Any]) -> str:
    status = "ok" if run["valid"] else f"INVALID ({run['invalid_because']})"
    return (
        f"  round {run['round']} {run['kind']:<8} {run['cpu_ms_per_page']:6.3f} ms/page crawl "
        f"({run['cpu_ms_per_page_whole']:.3f} whole, start-up {run['cpu_startup_s']:.2f} s; "
        f"main {run['cpu_main_thread_s']:.2f} s, other threads {run['cpu_other_threads_s']:.2f} s)"
        f"  {run['pages_per_s']:7.1f} pages/s  load {run['loadavg_1m_before']:.1f}  {status}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_page")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="rounds, each runs both")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=KINDS, help="run one process kind only")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable for the worker (a setting to try)",
    )
    parser.add_argument("--work", default="/tmp/trawl-bench-cpu")
    parser.add_argument("--no-save", action="store_true", help="print only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.kinds = (args.only,) if args.only else KINDS
    pairs = [item.partition("=") for item in args.worker_env]
    bad = [item for item, (_, eq, _) in zip(args.worker_env, pairs, strict=True) if not eq]
    if bad:
        raise SystemExit(f"--worker-env wants K=V, not {bad[0]!r}")
    args.worker_env = {k: v for k, _, v in pairs}
    Path(args.work).mkdir(parents=True, exist_ok=True)
    command = "python -m bench.cpu_per_page " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "command": command.strip(),
        "pages": args.pages,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "worker_env": args.worker_env,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": round(os.getloadavg()[0], 2),
    }
    runs = asyncio.run(main_async(args))
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    result = {"meta": meta, "summary": summarize(runs), "runs": runs}
    report = markdown(result)
    print(report)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"cpu-per-page-{meta['stamp']}.json").write_text(
            json.dumps(result, indent=2) + "\n"
        )
        (RESULTS / "cpu-per-page.md").write_text(report)
    return 0 if all(r["valid"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
