"""Memory of the runtime over a long crawl: does RSS grow with pages crawled?

The claim under test: "RSS must not grow with pages crawled beyond the seen-set itself".
``trawl run`` crawls a generated documentation site (bench/docsite.py) served by nginx,
20,000 pages on the http engine and 2,000 on the browser engine, 32 in flight. Its
process tree's RSS is sampled every 100 ms (summed over Chromium's processes too) and
matched with the "pages done N" progress lines ``trawl run`` prints on stderr every ~2 s
when stderr is not a terminal. Reported: pages/s, peak RSS, RSS at 10%, 20%, ... 100% of
the pages with the peak within each tenth, the growth (peak of 50-90% minus peak of
10-50%), the peak at the end (completion, export, shutdown) on its own, and what a
seen-set of the site's URLs weighs (measured here with tracemalloc) to compare with. The
tree's PSS (shared pages divided among Chromium's processes: the fairer figure for a
browser) is sampled every second and reported the same way, beside RSS.

    .venv/bin/python -m bench.memory [--http-pages 20000] [--browser-pages 2000]
    .venv/bin/python -m bench.memory --quick          # 5,000 / 300 pages
    .venv/bin/python -m bench.memory --skip-browser
    .venv/bin/python -m bench.memory --skip-http --browser-pages 5000   # ~16 minutes

Saved: bench/results/memory-<timestamp>.json and bench/results/memory-latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.crawlers import CRAWLERS
from bench.docsite import SiteInfo, generate
from bench.measure import MB, Sample, _pss, run_measured
from bench.run import check_complete
from bench.serve import SiteServer

RESULTS = Path(__file__).resolve().parent / "results"
PSS_EVERY = 10  # samples (1 s): reading every process's smaps_rollup costs more than RSS
PROGRESS = re.compile(rb"pages done (\d+)\s+queued (\d+)\s+failed (\d+)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ProgressTail:
    """Reads the progress lines a running ``trawl run`` appends to its stderr file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.done = 0
        self.queued = 0
        self.failed = 0

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            match = PROGRESS.search(line)
            if match:
                self.done, self.queued, self.failed = (int(g) for g in match.groups())


def seen_set_bytes(urls: list[str]) -> int:
    """What a Python set of these URL strings costs: the floor RSS growth is measured against."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seen = {"".join(u) for u in urls}  # fresh str objects, as a crawl would hold
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del seen
    return after - before


Point = tuple[float, int, int, int]  # (t s, RSS bytes, processes, pages done)


def rss_curve(points: list[Point], total: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """RSS at each tenth of the pages, the peak within each tenth, and the growth.

    A tenth's window runs from the sample where the progress line first showed the previous
    tenth done to the one where it showed this one. Growth compares the peak of the second
    half of the crawl (windows 50-90%) with the first half's (10-50%): the first tenth is
    start-up, and the end (completion, the export, shutdown) is reported on its own, so
    neither passes for growth with pages. Windows' peaks, not point values, because the
    browser engine's RSS is a saw-tooth (a new browser every 500 pages).
    """
    curve: list[dict[str, Any]] = []
    start_index = 0
    for decile in range(1, 11):
        threshold = total * decile / 10
        index = next((i for i, p in enumerate(points) if p[3] >= threshold), None)
        if index is None and decile == 10 and points:
            index = len(points) - 1  # the last progress line may come before the final pages
        if index is None:
            curve.append({"percent": decile * 10})
            continue
        t, rss, _, done = points[index]
        window = [p[1] for p in points[start_index : index + 1]]
        curve.append(
            {
                "percent": decile * 10,
                "t_s": round(t, 1),
                "pages_done": done,
                "rss_mb": round(rss / MB, 1),
                "window_peak_mb": round(max(window) / MB, 1),
            }
        )
        start_index = index
    growth: dict[str, Any] = {}
    first = [c["window_peak_mb"] for c in curve[1:5] if "window_peak_mb" in c]
    second = [c["window_peak_mb"] for c in curve[5:9] if "window_peak_mb" in c]
    if first and second:
        at10, at90 = curve[0].get("pages_done") or 0, curve[8].get("pages_done") or total
        delta = max(second) - max(first)
        pages = max(1, (at90 - at10) // 2)
        growth = {
            "first_half_peak_mb": max(first),
            "second_half_peak_mb": max(second),
            "growth_mb": round(delta, 1),
            "per_1000_pages_mb": round(delta / pages * 1000, 2),
        }
    if "t_s" in curve[8]:
        before_end = [p[1] for p in points if p[0] <= curve[8]["t_s"]]
        after = [p[1] for p in points if p[0] > curve[8]["t_s"]]
        if after and before_end:
            growth["end_peak_mb"] = round(max(after) / MB, 1)
            growth["end_over_crawl_peak_mb"] = round((max(after) - max(before_end)) / MB, 1)
    return curve, growth


def crawl_memory(
    engine: str, site: SiteInfo, *, concurrency: int, timeout_s: float, keep: Path | None
) -> dict[str, Any]:
    crawler = CRAWLERS[f"trawl-{engine}"]
    expected = site.paths()
    total = len(expected)
    with SiteServer(site.root) as server:
        log(f"{engine}: {total}-page site served by {server.describe()}")
        work = Path(tempfile.mkdtemp(prefix=f"trawl-memory-{engine}-"))
        try:
            argv, extra_env = crawler.build(f"{server.base_url}/index.html", work, concurrency)
            env = {**os.environ, **extra_env}
            tail = ProgressTail(work / "crawl.stderr")
            points: list[Point] = []
            pss_points: list[Point] = []
            me = psutil.Process()
            server_pids = {p.pid for p in me.children(recursive=True)}  # the site's server

            def on_sample(sample: Sample) -> None:
                tail.poll()
                points.append((sample.t_s, sample.rss_bytes, sample.processes, tail.done))
                if len(points) % PSS_EVERY == 1:  # the crawl's tree: our children but the server
                    crawl = [p.pid for p in me.children(recursive=True) if p.pid not in server_pids]
                    pss = sum(_pss(pid) for pid in crawl)
                    pss_points.append((sample.t_s, pss, len(crawl), tail.done))

            measured = run_measured(
                argv,
                cwd=work,
                env=env,
                log_dir=work,
                name="crawl",
                timeout_s=timeout_s,
                on_sample=on_sample,
            )
            tail.poll()
            check = check_complete(crawler.read(work), expected, server.base_url)
            if keep is not None:
                shutil.copytree(work, keep / f"memory-{engine}", dirs_exist_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        urls = [f"{server.base_url}{p}" for p in expected]
    curve, growth = rss_curve(points, total)
    pss_curve, pss_growth = rss_curve(pss_points, total)
    for point, pss_point in zip(curve, pss_curve, strict=True):
        if "rss_mb" in pss_point:
            point["pss_mb"] = pss_point["rss_mb"]
            point["window_peak_pss_mb"] = pss_point["window_peak_mb"]
    seen_mb = seen_set_bytes(urls) / MB
    return {
        "engine": engine,
        "site_pages": total,
        "valid": check["missing"] == 0 and measured.returncode == 0,
        "check": check,
        "returncode": measured.returncode,
        "wall_s": round(measured.wall_s, 1),
        "pages_per_s": round(total / measured.wall_s, 1),
        "cpu_ms_per_page": round(measured.cpu_s / total * 1000, 2),
        "peak_rss_mb": round(measured.peak_rss_bytes / MB, 1),
        "peak_pss_mb": round(measured.peak_pss_bytes / MB, 1),
        "peak_processes": measured.peak_processes,
        "curve": curve,
        "growth": growth,
        "pss_growth": pss_growth,
        "seen_set_of_all_urls_mb": round(seen_mb, 2),
        "series": [
            {"t_s": round(t, 2), "rss_mb": round(r / MB, 1), "procs": n, "pages_done": d}
            for t, r, n, d in points[::5]  # every 0.5 s
        ],
        "log_tail": None if measured.returncode == 0 else measured.tail(),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Memory over a crawl, {result['started_at']}",
        "",
        "`trawl run`, 32 in flight, RSS of the process tree sampled every 100 ms "
        f"({result['cpus']} CPUs, load average at start {result['loadavg_start']}; other work "
        "shares this machine).",
        "",
        "| engine | pages | valid | pages/s | CPU ms/page | peak RSS MB | peak PSS MB | "
        "peak 10-50% MB | peak 50-90% MB | growth MB | per 1,000 pages MB | "
        "end (90%-exit) peak MB | seen-set of all URLs MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["engines"]:
        g = r["growth"] or {}
        lines.append(
            f"| {r['engine']} | {r['site_pages']} | {'yes' if r['valid'] else 'NO'} | "
            f"{r['pages_per_s']:.1f} | {r['cpu_ms_per_page']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_pss_mb']:.0f} | {g.get('first_half_peak_mb', '-')} | "
            f"{g.get('second_half_peak_mb', '-')} | {g.get('growth_mb', '-')} | "
            f"{g.get('per_1000_pages_mb', '-')} | {g.get('end_peak_mb', '-')} | "
            f"{r['seen_set_of_all_urls_mb']:.1f} |"
        )
    for r in result["engines"]:
        lines += [
            "",
            f"RSS curve, {r['engine']} engine ({r['site_pages']} pages): "
            "RSS when the progress line first showed that share of pages done "
            "(progress lines come every ~2 s), and the peak since the previous tenth.",
            "",
            "| % of pages | pages done | t s | RSS MB | peak in this tenth MB | PSS MB | "
            "PSS peak in this tenth MB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for point in r["curve"]:
            lines.append(
                f"| {point['percent']} | {point.get('pages_done', '-')} | "
                f"{point.get('t_s', '-')} | {point.get('rss_mb', '-')} | "
                f"{point.get('window_peak_mb', '-')} | {point.get('pss_mb', '-')} | "
                f"{point.get('window_peak_pss_mb', '-')} |"
            )
        pss = r.get("pss_growth") or {}
        if pss:
            lines += [
                "",
                f"PSS (sampled every second): peak of the 10-50% tenths "
                f"{pss.get('first_half_peak_mb')} MB, of the 50-90% tenths "
                f"{pss.get('second_half_peak_mb')} MB: {pss.get('growth_mb')} MB, "
                f"{pss.get('per_1000_pages_mb')} MB per 1,000 pages.",
            ]
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--http-pages", type=int, default=20000)
    parser.add_argument("--browser-pages", type=int, default=2000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5,000 / 300 pages")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", type=Path, help="copy the crawl's work dir here")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.http_pages, args.browser_pages = 5000, 300
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result: dict[str, Any] = {
        "started_at": started_at,
        "command": " ".join(
            ["python -m bench.memory", *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpus": os.cpu_count(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "engines": [],
    }
    t0 = time.monotonic()
    plan = []
    if not args.skip_http:
        plan.append(("http", args.http_pages))
    if not args.skip_browser:
        plan.append(("browser", args.browser_pages))
    for engine, pages in plan:
        site = generate(pages)
        run = crawl_memory(
            engine, site, concurrency=args.concurrency, timeout_s=args.timeout, keep=args.keep
        )
        result["engines"].append(run)
        g = run["growth"] or {}
        log(
            f"  {engine}: {run['pages_per_s']} pages/s, peak RSS {run['peak_rss_mb']} MB, "
            f"growth (2nd half - 1st half) {g.get('growth_mb')} MB, "
            f"end peak {g.get('end_peak_mb')} MB, "
            f"missing {run['check']['missing']}"
        )
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    table = markdown(result)
    print(table)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = started_at.replace(":", "").replace("-", "")
        (RESULTS / f"memory-{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "memory-latest.md").write_text(table)
        log(f"saved {RESULTS / f'memory-{stamp}.json'} and {RESULTS / 'memory-latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
