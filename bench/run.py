"""``make bench``: Trawl beside the crawlers users would pick instead, in one run.

Generates the documentation site (bench/docsite.py), serves it with nginx (bench/serve.py),
measures the server's ceiling, then crawls the whole site with each crawler, interleaved
(A B C D A B C D ...), ``--runs`` times each, 32 requests in flight, no politeness delay:

    http engine, --pages (5,000):          trawl-http, trawl-http-auto, scrapy,
                                           crawlee-parsel, bare-loop
    browser engine, --browser-pages (500): trawl-browser, trawl-browser-auto,
                                           crawlee-playwright, playwright-loop

``trawl-*`` runs at ``--concurrency 32`` like every other crawler; ``trawl-*-auto`` at the
command's default, concurrency autoscaled from CPU, memory and event-loop lag (32 still
caps each host, as for every crawler): what a user who picks no number gets.

Per run: wall time, pages/s, CPU seconds per page and peak RSS of the crawler's whole
process tree (bench/measure.py), and a completeness check against the site's pages.txt:
a run that misses a page, or a title, is invalid and left out of the medians.

    .venv/bin/python -m bench.run                    # everything (~15-20 min on 2 cores)
    .venv/bin/python -m bench.run --quick            # 1,000 / 100 pages, one run each
    .venv/bin/python -m bench.run --only trawl-http,bare-loop --runs 5
    .venv/bin/python -m bench.run --skip-browser --memory   # + bench.memory afterwards

Results: bench/results/<timestamp>.json (every run) and bench/results/latest.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.crawlers import (
    CHROMIUM,
    CRAWLERS,
    Crawler,
    Record,
    compile_trawl,
    ensure_venv,
    trawl_timings,
    versions,
)
from bench.docsite import SiteInfo, generate
from bench.measure import MB, run_measured, self_cpu_s
from bench.serve import SiteServer, measure_ceiling

RESULTS = Path(__file__).resolve().parent / "results"
HTTP_ORDER = ["trawl-http", "trawl-http-auto", "scrapy", "crawlee-parsel", "bare-loop"]
BROWSER_ORDER = ["trawl-browser", "trawl-browser-auto", "crawlee-playwright", "playwright-loop"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- completeness -------------------------------------------------------------------------------


def check_complete(records: list[Record], expected: Iterable[str], base_url: str) -> dict[str, Any]:
    """Which of the site's pages a crawler's output holds (by URL, fragment ignored)."""
    netloc = urlsplit(base_url).netloc
    expected_set = set(expected)
    found: dict[str, str | None] = {}
    keys = []
    for url, title in records:
        parts = urlsplit(url)
        key = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.netloc != netloc:
            key = url
        keys.append(key)
        if key not in found or not found[key]:
            found[key] = title
    missing = sorted(expected_set - found.keys())
    extra = sorted(found.keys() - expected_set)
    untitled = sorted(k for k in expected_set & found.keys() if not (found[k] or "").strip())
    return {
        "records": len(keys),
        "unique_urls": len(found),
        "duplicates": len(keys) - len(found),
        "missing": len(missing),
        "extra": len(extra),
        "untitled": len(untitled),
        "missing_examples": missing[:5],
        "extra_examples": extra[:5],
    }


# --- one run ------------------------------------------------------------------------------------


def run_one(
    crawler: Crawler,
    site: SiteInfo,
    expected: list[str],
    base_url: str,
    *,
    round_no: int,
    concurrency: int,
    timeout_s: float,
    keep: Path | None,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"trawl-bench-{crawler.name}-"))
    try:
        argv, extra_env = crawler.build(f"{base_url}/index.html", work, concurrency)
        env = {**os.environ, **extra_env, "PYTHONDONTWRITEBYTECODE": "1"}
        load_before = os.getloadavg()[0]
        spawned_at = time.time()
        measured = run_measured(
            argv, cwd=work, env=env, log_dir=work, name="crawl", timeout_s=timeout_s
        )
        timings = (
            trawl_timings(work, spawned_at, spawned_at + measured.wall_s)
            if crawler.is_trawl
            else None
        )
        records = crawler.read(work)
        check = check_complete(records, expected, base_url)
        pages = len(expected)
        reasons = []
        if measured.timed_out:
            reasons.append(f"timed out after {timeout_s:.0f}s")
        elif measured.returncode != 0:
            reasons.append(f"exit code {measured.returncode}")
        if check["missing"]:
            reasons.append(f"{check['missing']} pages missing")
        if check["untitled"]:
            reasons.append(f"{check['untitled']} pages without a title")
        result = {
            "crawler": crawler.name,
            "engine": crawler.engine,
            "round": round_no,
            "site_pages": pages,
            "valid": not reasons,
            "invalid_because": "; ".join(reasons) or None,
            "wall_s": round(measured.wall_s, 3),
            "pages_per_s": round(pages / measured.wall_s, 2),
            "cpu_s": round(measured.cpu_s, 3),
            "cpu_ms_per_page": round(measured.cpu_s / pages * 1000, 3),
            "cpu_wait4_s": round(measured.cpu_wait4_s, 3),
            "cpu_sampled_s": round(measured.cpu_sampled_s, 3),
            "peak_rss_mb": round(measured.peak_rss_bytes / MB, 1),
            "peak_pss_mb": round(measured.peak_pss_bytes / MB, 1),
            "peak_processes": measured.peak_processes,
            "cpu_sampled_by_process_kind_s": measured.cpu_by_kind,
            "returncode": measured.returncode,
            "loadavg_1m_before": round(load_before, 2),
            "check": check,
            "argv": argv,
        }
        if timings is not None:
            result["trawl_timings"] = timings
        if reasons:
            result["log_tail"] = measured.tail()
        if keep is not None:
            dest = keep / f"{crawler.name}-{round_no}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def describe(run: dict[str, Any]) -> str:
    status = "ok" if run["valid"] else f"INVALID ({run['invalid_because']})"
    c = run["check"]
    return (
        f"  {run['crawler']:<19} round {run['round']}: {run['wall_s']:7.1f}s "
        f"{run['pages_per_s']:8.1f} pages/s  {run['cpu_ms_per_page']:7.2f} ms CPU/page  "
        f"peak RSS {run['peak_rss_mb']:7.1f} MB (PSS {run['peak_pss_mb']:.0f})  "
        f"records {c['records']} "
        f"(missing {c['missing']}, extra {c['extra']}, dup {c['duplicates']})  "
        f"load {run['loadavg_1m_before']:.1f}  {status}{_timings_text(run)}"
    )


def _timings_text(run: dict[str, Any]) -> str:
    t = run.get("trawl_timings")
    if not t:
        return ""
    return (
        f"  (start-up {t['startup_s']:.2f}s, export {t['export_s']:.2f}s, exit {t['exit_s']:.2f}s)"
    )


# --- summary ------------------------------------------------------------------------------------

# Trawl's figure over a peer's, by the name of the column it goes in.
RATIOS = {
    "trawl_speed_x": "pages_per_s",
    "trawl_cpu_x": "cpu_ms_per_page",
    "trawl_rss_x": "peak_rss_mb",
    "trawl_pss_x": "peak_pss_mb",
}


def put_medians(
    row: dict[str, Any], valid: list[dict[str, Any]], keys: Sequence[str], digits: int
) -> None:
    """The median of each of ``keys`` over the ``valid`` runs into ``row``, with its range
    (min-max) as ``<key>_range``; nothing for a key without valid runs."""
    for key in keys:
        values = [r[key] for r in valid]
        if values:
            row[key] = round(statistics.median(values), digits)
            row[f"{key}_range"] = [min(values), max(values)]


def put_trawl_ratios(
    row: dict[str, Any], trawl: dict[str, Any] | None, ratios: Mapping[str, str] = RATIOS
) -> None:
    """Into a peer's ``row``: Trawl's figure over the peer's, for each of ``ratios`` both
    measured. Nothing for a Trawl row (auto beside fixed is read off the table) or when
    either has no valid run."""
    if trawl is None or row["crawler"].startswith("trawl"):
        return
    if "pages_per_s" not in trawl or "pages_per_s" not in row:
        return
    for column, key in ratios.items():
        if trawl.get(key) and row.get(key):
            row[column] = round(trawl[key] / row[key], 2)


def summarize(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        mine = [r for r in runs if r["crawler"] == name]
        if not mine:
            continue
        valid = [r for r in mine if r["valid"]]
        row: dict[str, Any] = {
            "crawler": name,
            "engine": mine[0]["engine"],
            "site_pages": mine[0]["site_pages"],
            "runs": len(mine),
            "valid_runs": len(valid),
            "missing_max": max(r["check"]["missing"] for r in mine),
            "extra_max": max(r["check"]["extra"] for r in mine),
        }
        if valid:
            keys = ("wall_s", "pages_per_s", "cpu_ms_per_page", "peak_rss_mb", "peak_pss_mb")
            put_medians(row, valid, keys, 3)
            timed = [r["trawl_timings"] for r in valid if r.get("trawl_timings")]
            if timed:
                row["trawl_timings"] = {
                    k: round(statistics.median(t[k] for t in timed), 3) for k in timed[0]
                }
        rows.append(row)
    by_name = {r["crawler"]: r for r in rows}
    for row in rows:
        put_trawl_ratios(row, by_name.get(f"trawl-{row['engine']}"))
    return rows


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """The figures the product aims at: (what, met?, the numbers)."""
    by = {r["crawler"]: r for r in rows}

    def ratio(a: str, b: str, key: str) -> float | None:
        if a in by and b in by and key in by[a] and key in by[b]:
            return float(by[a][key]) / float(by[b][key])
        return None

    out: list[tuple[str, bool | None, str]] = []

    def add(what: str, value: float | None, goal: float, higher: bool) -> None:
        if value is None:
            out.append((what, None, "not measured (a crawler without valid runs?)"))
        else:
            met = value >= goal if higher else value <= goal
            out.append((what, met, f"{value:.2f}x (goal {'>=' if higher else '<='} {goal}x)"))

    add("trawl-http pages/s >= 5x scrapy", ratio("trawl-http", "scrapy", "pages_per_s"), 5, True)
    # Issue 17: the whole `trawl run` process (start-up and exit included; pages/s is over
    # the process's wall time) on a ~1,000-page site (`--pages 1000`).
    add(
        "trawl-http whole-process pages/s >= 6x scrapy",
        ratio("trawl-http", "scrapy", "pages_per_s"),
        6,
        True,
    )
    add(
        "trawl-http whole-process pages/s >= 0.85x bare-loop",
        ratio("trawl-http", "bare-loop", "pages_per_s"),
        0.85,
        True,
    )
    # Issue 17: autoscaled, a user need not guess a number (and loses little to the best
    # fixed one the bench gives the others).
    add(
        "trawl-http autoscaled pages/s >= 0.9x at fixed --concurrency",
        ratio("trawl-http-auto", "trawl-http", "pages_per_s"),
        0.9,
        True,
    )
    add(
        "trawl-http pages/s >= 0.6x bare-loop",
        ratio("trawl-http", "bare-loop", "pages_per_s"),
        0.6,
        True,
    )
    add(
        "trawl-http peak RSS <= scrapy's",
        ratio("trawl-http", "scrapy", "peak_rss_mb"),
        1.0,
        False,
    )
    add(
        "trawl-browser pages/s >= 2x crawlee-playwright",
        ratio("trawl-browser", "crawlee-playwright", "pages_per_s"),
        2,
        True,
    )
    add(
        "trawl-browser peak RSS < crawlee-playwright's",
        ratio("trawl-browser", "crawlee-playwright", "peak_rss_mb"),
        1.0,
        False,
    )
    add(
        "trawl-browser peak PSS < crawlee-playwright's",
        ratio("trawl-browser", "crawlee-playwright", "peak_pss_mb"),
        1.0,
        False,
    )
    return out


def fmt_cell(row: dict[str, Any], key: str, spec: str) -> str:
    """A table cell: ``row[key]`` formatted with ``spec``, or "-" when not measured."""
    return format(row[key], spec) if key in row else "-"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"# Crawl benchmark, {meta['started_at']}",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}; "
        f"load average at start {meta['loadavg_start']} (other work shares this machine). "
        f"Server: {meta['server']}. Every crawler: {meta['concurrency']} requests in flight, "
        f"no delay, title + same-host links, JSONL out. Figures are medians of the valid "
        f"runs ({meta['runs']} per http crawler, "
        f"{meta.get('browser_runs', meta['runs'])} per browser crawler, interleaved); "
        "the range is min-max.",
        "",
    ]
    ceiling = result.get("ceiling")
    if ceiling:
        lines += [
            f"Server ceiling (aiohttp client x{ceiling['client_processes']} processes, "
            f"{ceiling['concurrency']} in flight, bodies read, no parsing): "
            f"**{ceiling['pages_per_s']:.0f} pages/s**, {ceiling['mb_per_s']:.0f} MB/s "
            f"(median of {ceiling['repeats']}).",
            "",
        ]
    lines += [
        "| crawler | engine | site pages | valid runs | pages/s (median) | range | "
        "CPU ms/page | peak RSS MB | peak PSS MB | Trawl speed x | Trawl CPU/page x | "
        "Trawl RSS x | Trawl PSS x | missing / extra (worst run) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["summary"]:
        rng = row.get("pages_per_s_range")
        lines.append(
            f"| {row['crawler']} | {row['engine']} | {row['site_pages']} | "
            f"{row['valid_runs']}/{row['runs']} | {fmt_cell(row, 'pages_per_s', '.1f')} | "
            f"{f'{rng[0]:.0f}-{rng[1]:.0f}' if rng else '-'} | "
            f"{fmt_cell(row, 'cpu_ms_per_page', '.2f')} | {fmt_cell(row, 'peak_rss_mb', '.0f')} | "
            f"{fmt_cell(row, 'peak_pss_mb', '.0f')} | "
            f"{fmt_cell(row, 'trawl_speed_x', '.2f')} | {fmt_cell(row, 'trawl_cpu_x', '.2f')} | "
            f"{fmt_cell(row, 'trawl_rss_x', '.2f')} | {fmt_cell(row, 'trawl_pss_x', '.2f')} | "
            f"{row['missing_max']} / {row['extra_max']} |"
        )
    lines += [
        "",
        "Trawl speed x = Trawl's pages/s / the peer's (above 1: Trawl is faster). "
        "Trawl CPU/page x and Trawl RSS x = Trawl's / the peer's (below 1: Trawl uses less). "
        "Rows compare with the Trawl engine of the same kind (http or browser). "
        "Peak RSS is summed over the crawler's process tree, sampled every 100 ms; it counts "
        "memory shared between processes (Chromium's) once per process. PSS, sampled every "
        "second, divides shared pages among their users: the fairer figure for browsers.",
    ]
    for row in result["summary"]:
        t = row.get("trawl_timings")
        if t:
            lines += [
                "",
                f"{row['crawler']}, where the process's time went (medians, from its files' "
                f"timestamps): spawn to the first request {t['startup_s']:.2f} s; last page "
                f"counted to the export written {t['export_s']:.2f} s; export written to exit "
                f"{t['exit_s']:.2f} s.",
            ]
    lines += [
        "",
        "| target | met | figure |",
        "|---|---|---|",
    ]
    for what, met, figure in result["targets"]:
        mark = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {what} | {mark} | {figure} |")
    invalid = [r for r in result["runs"] if not r["valid"]]
    if invalid:
        lines += ["", "Invalid runs:", ""]
        lines += [f"- {r['crawler']} round {r['round']}: {r['invalid_because']}" for r in invalid]
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def _chromium_version() -> str | None:
    try:
        out = subprocess.run(
            [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def run_part(
    names: list[str],
    site: SiteInfo,
    args: argparse.Namespace,
    *,
    rounds: int,
    runs: list[dict[str, Any]],
    ceiling_out: dict[str, Any] | None,
) -> str:
    expected = site.paths()
    with SiteServer(site.root, prefer=args.server) as server:
        log(f"{site.pages}-page site {site.root} served by {server.describe()}")
        if ceiling_out is not None:
            tries = [
                measure_ceiling(server.base_url, expected, concurrency=args.concurrency)
                for _ in range(3)
            ]
            best = sorted(tries, key=lambda t: t["pages_per_s"])[1]
            ceiling_out.update(best, repeats=3, all_pages_per_s=[t["pages_per_s"] for t in tries])
            log(f"  server ceiling: {ceiling_out['pages_per_s']:.0f} pages/s (median of 3)")
        for round_no in range(1, rounds + 1):
            for name in names:
                result = run_one(
                    CRAWLERS[name],
                    site,
                    expected,
                    server.base_url,
                    round_no=round_no,
                    concurrency=args.concurrency,
                    timeout_s=args.timeout,
                    keep=args.keep,
                )
                runs.append(result)
                log(describe(result))
        return server.describe()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pages", type=int, default=5000, help="http site size (5000)")
    parser.add_argument("--browser-pages", type=int, default=500, help="browser site (500)")
    parser.add_argument("--runs", type=int, default=3, help="runs per http crawler (3)")
    parser.add_argument(
        "--browser-runs",
        type=int,
        default=2,
        help="runs per browser crawler (2: three take ~9 more minutes on 2 cores)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", help="comma-separated crawlers: " + ", ".join(CRAWLERS))
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1,000 / 100 pages, 1 run")
    parser.add_argument(
        "--http-1000",
        action="store_true",
        help="the whole-process comparison: trawl-http, bare-loop and scrapy on a 1,000-page "
        "site, --runs interleaved runs each (3); saved as results/http-1000-<stamp>.json and "
        "http-1000.md",
    )
    parser.add_argument("--memory", action="store_true", help="then run bench.memory too")
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--server", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--keep", type=Path, help="copy each run's work dir (logs, out) here")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave trawl's packages without bytecode (as a checkout run with "
        "PYTHONDONTWRITEBYTECODE): each run compiles what it imports",
    )
    return parser


def _meta(argv: list[str] | None, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "concurrency": args.concurrency,
        "runs": args.runs,
        "browser_runs": args.browser_runs,
        "chromium": _chromium_version()
        if any(CRAWLERS[n].engine == "browser" for n in names)
        else None,
        "versions": {n: versions(CRAWLERS[n]) for n in names},
    }


def _save(result: dict[str, Any], table: str, name: str | None = None) -> None:
    """``<stamp>.json`` and ``latest.md``; with ``name``, ``<name>-<stamp>.json`` and
    ``<name>.md`` (a preset's results beside the main comparison's)."""
    RESULTS.mkdir(exist_ok=True)
    stamp = result["meta"]["started_at"].replace(":", "").replace("-", "")
    data = RESULTS / (f"{name}-{stamp}.json" if name else f"{stamp}.json")
    md = RESULTS / (f"{name}.md" if name else "latest.md")
    data.write_text(json.dumps(result, indent=1) + "\n")
    md.write_text(table)
    log(f"saved {data} and {md}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.pages, args.browser_pages, args.runs, args.browser_runs = 1000, 100, 1, 1
    preset = None
    if args.http_1000:  # issue 17's whole-process comparison
        args.pages, args.skip_browser, preset = 1000, True, "http-1000"
        args.only = args.only or "trawl-http,trawl-http-auto,bare-loop,scrapy"
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only.split(",")) if args.only else set(CRAWLERS)
    unknown = wanted - CRAWLERS.keys()
    if unknown:
        parser.error(f"unknown crawlers: {', '.join(sorted(unknown))}")
    http_names = [n for n in HTTP_ORDER if n in wanted and not args.skip_http]
    browser_names = [n for n in BROWSER_ORDER if n in wanted and not args.skip_browser]
    for name in http_names + browser_names:
        venv = CRAWLERS[name].venv
        if venv:
            ensure_venv(venv, log)
    if not args.no_compile and any(CRAWLERS[n].is_trawl for n in http_names + browser_names):
        compile_trawl(log)

    meta = _meta(argv, args, http_names + browser_names)
    runs: list[dict[str, Any]] = []
    ceiling: dict[str, Any] = {}
    driver_cpu = self_cpu_s()
    t0 = time.monotonic()
    if http_names:
        site = generate(args.pages)
        meta["http_site"] = _site_meta(site)
        meta["server"] = run_part(
            http_names, site, args, rounds=args.runs, runs=runs, ceiling_out=ceiling
        )
    if browser_names:
        bsite = generate(args.browser_pages)
        meta["browser_site"] = _site_meta(bsite)
        meta["server"] = run_part(
            browser_names, bsite, args, rounds=args.browser_runs, runs=runs, ceiling_out=None
        )
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    meta["driver_cpu_s"] = round(self_cpu_s() - driver_cpu, 2)
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    meta.setdefault("server", "-")

    summary = summarize(runs, http_names + browser_names)
    result = {
        "meta": meta,
        "ceiling": ceiling or None,
        "summary": summary,
        "targets": targets(summary),
        "runs": runs,
    }
    table = markdown(result)
    print(table)
    if not args.no_save:
        _save(result, table, preset)
    if args.memory:
        from bench import memory

        memory.main(["--quick"] if args.quick else [])
    return 0


def _site_meta(site: SiteInfo) -> dict[str, Any]:
    return {
        "name": site.name,
        "pages": site.pages,
        "seed": site.seed,
        "mean_kb": round(site.total_bytes / site.pages / 1024, 1),
        "links_per_page": round(site.total_links / site.pages, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
