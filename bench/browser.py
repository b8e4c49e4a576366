"""The browser engine on a JavaScript-heavy site, beside Crawlee and a plain Playwright loop.

Generates the JS site (bench/jssite.py: every title, heading, text and link rendered by
scripts, plus stylesheet, fonts, images and third-party subresources), serves it
(bench/serve.py) and crawls it whole, interleaved (A B C, A B C, ...), ``--runs`` times:

- ``trawl-browser``: ``trawl run``, engine browser, one phase: ``extract`` (title, h1) and
  ``extract_links``, the workflow's defaults otherwise (wait for ``domcontentloaded``,
  images, fonts and media blocked);
- ``trawl-browser-auto``: the same, at ``trawl run``'s default concurrency (autoscaled,
  up to the browser's 8 tabs): what a user who picks no number gets;
- ``playwright-loop``: bench/peers/playwright_loop.py, the plain loop (N tabs of one
  context, page.goto with Playwright's default wait for ``load``, nothing blocked);
- ``crawlee-playwright``: bench/peers/crawlee_playwright.py, Crawlee's PlaywrightCrawler.

Same Chromium (/usr/bin/chromium), same flags, same pages in flight (``--concurrency``,
default 8: the tabs Trawl's browser engine keeps open at most). Per run: pages/s, CPU ms
per page and peak PSS of the crawler's whole process tree (bench/measure.py). A run is
valid only if it found every page and read, for each, the title the page's JavaScript
renders (the shell's title is "Loading..."): a crawler that skipped the scripts, or read
the page before they ran, is invalid and left out of the medians.

    .venv/bin/python -m bench.browser [--pages 300] [--runs 2] [--concurrency 8]
        [--only trawl-browser,playwright-loop] [--keep DIR] [--no-save]

Saved: bench/results/browser-js-<timestamp>.json (every run) and browser-js.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import jssite
from bench.crawlers import CRAWLERS, Crawler, Record, ensure_venv, trawl_command, versions
from bench.docsite import SiteInfo
from bench.measure import MB, run_measured
from bench.run import RATIOS, check_complete, fmt_cell, put_medians, put_trawl_ratios
from bench.serve import SiteServer

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ["trawl-browser", "trawl-browser-auto", "playwright-loop", "crawlee-playwright"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def crawler(name: str) -> Crawler:
    """The crawler ``name`` as bench/crawlers.py has it, Trawl with this benchmark's workflow."""
    base = CRAWLERS[name]
    if base.is_trawl:
        auto = name.endswith("-auto")
        build = trawl_command("browser", auto, name="bench-js", fields=("title", "h1"))
        return Crawler(name, "browser", build, base.read)
    return base


def wrong_titles(records: Sequence[Record], titles: dict[str, str]) -> list[str]:
    """The pages whose recorded title is not the one their JavaScript renders."""
    wrong = []
    for url, title in records:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if path in titles and (title or "").strip() != titles[path]:
            wrong.append(path)
    return sorted(set(wrong))


def run_one(
    name: str,
    site: SiteInfo,
    base_url: str,
    *,
    round_no: int,
    concurrency: int,
    timeout_s: float,
    keep: Path | None,
) -> dict[str, Any]:
    chosen = crawler(name)
    expected = site.paths()
    work = Path(tempfile.mkdtemp(prefix=f"trawl-bench-js-{name}-"))
    try:
        argv, extra_env = chosen.build(f"{base_url}/index.html", work, concurrency)
        env = {**os.environ, **extra_env, "PYTHONDONTWRITEBYTECODE": "1"}
        load_before = os.getloadavg()[0]
        measured = run_measured(
            argv, cwd=work, env=env, log_dir=work, name="crawl", timeout_s=timeout_s
        )
        records = chosen.read(work)
        check = check_complete(records, expected, base_url)
        wrong = wrong_titles(records, jssite.titles(site))
        check["wrong_titles"] = len(wrong)
        check["wrong_title_examples"] = wrong[:5]
        pages = len(expected)
        reasons = []
        if measured.timed_out:
            reasons.append(f"timed out after {timeout_s:.0f}s")
        elif measured.returncode != 0:
            reasons.append(f"exit code {measured.returncode}")
        if check["missing"]:
            reasons.append(f"{check['missing']} pages missing")
        if wrong:
            reasons.append(f"{len(wrong)} pages without their rendered title")
        result: dict[str, Any] = {
            "crawler": name,
            "round": round_no,
            "site_pages": pages,
            "valid": not reasons,
            "invalid_because": "; ".join(reasons) or None,
            "wall_s": round(measured.wall_s, 3),
            "pages_per_s": round(pages / measured.wall_s, 2),
            "cpu_s": round(measured.cpu_s, 3),
            "cpu_ms_per_page": round(measured.cpu_s / pages * 1000, 2),
            "peak_rss_mb": round(measured.peak_rss_bytes / MB, 1),
            "peak_pss_mb": round(measured.peak_pss_bytes / MB, 1),
            "peak_processes": measured.peak_processes,
            "cpu_sampled_by_process_kind_s": measured.cpu_by_kind,
            "returncode": measured.returncode,
            "loadavg_1m_before": round(load_before, 2),
            "check": check,
            "argv": argv,
        }
        if reasons:
            result["log_tail"] = measured.tail()
        if keep is not None:
            shutil.copytree(work, keep / f"{name}-{round_no}", dirs_exist_ok=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def describe(run: dict[str, Any]) -> str:
    status = "ok" if run["valid"] else f"INVALID ({run['invalid_because']})"
    return (
        f"  {run['crawler']:<19} round {run['round']}: {run['wall_s']:7.1f}s "
        f"{run['pages_per_s']:6.2f} pages/s  {run['cpu_ms_per_page']:7.1f} ms CPU/page  "
        f"peak PSS {run['peak_pss_mb']:6.0f} MB (RSS {run['peak_rss_mb']:.0f})  "
        f"load {run['loadavg_1m_before']:.1f}  {status}"
    )


def summarize(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        mine = [r for r in runs if r["crawler"] == name]
        if not mine:
            continue
        valid = [r for r in mine if r["valid"]]
        row: dict[str, Any] = {"crawler": name, "runs": len(mine), "valid_runs": len(valid)}
        put_medians(row, valid, ("pages_per_s", "cpu_ms_per_page", "peak_pss_mb", "peak_rss_mb"), 2)
        rows.append(row)
    trawl = next((r for r in rows if r["crawler"] == "trawl-browser"), None)
    ratios = {k: v for k, v in RATIOS.items() if k != "trawl_rss_x"}  # PSS, not RSS, here
    for row in rows:
        put_trawl_ratios(row, trawl, ratios)
    return rows


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"# Browser benchmark on a JavaScript-heavy site, {meta['started_at']}",
        "",
        f"Site: bench/jssite.py, {meta['site']['pages']} pages, every title, text and link "
        f"rendered by scripts (~{meta['site']['links_per_page']} links/page), plus a "
        "stylesheet, 2 web fonts, 4-6 images and 3 third-party subresources per page. "
        f"Server: {meta['server']}. {meta['concurrency']} pages in flight per crawler, "
        f"{meta['chromium']}. Machine: {meta['cpus']} CPUs, load average at start "
        f"{meta['loadavg_start']} (shared with other work). Medians of the valid runs "
        f"({meta['runs']} per crawler, interleaved); range is min-max.",
        "",
        "| crawler | valid runs | pages/s | range | CPU ms/page | range | peak PSS MB | "
        "peak RSS MB | Trawl speed x | Trawl CPU/page x | Trawl PSS x |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["summary"]:
        speed = row.get("pages_per_s_range")
        cpu = row.get("cpu_ms_per_page_range")
        lines.append(
            f"| {row['crawler']} | {row['valid_runs']}/{row['runs']} | "
            f"{fmt_cell(row, 'pages_per_s', '.2f')} | "
            f"{f'{speed[0]:.2f}-{speed[1]:.2f}' if speed else '-'} | "
            f"{fmt_cell(row, 'cpu_ms_per_page', '.0f')} | "
            f"{f'{cpu[0]:.0f}-{cpu[1]:.0f}' if cpu else '-'} | "
            f"{fmt_cell(row, 'peak_pss_mb', '.0f')} | {fmt_cell(row, 'peak_rss_mb', '.0f')} | "
            f"{fmt_cell(row, 'trawl_speed_x', '.2f')} | {fmt_cell(row, 'trawl_cpu_x', '.2f')} | "
            f"{fmt_cell(row, 'trawl_pss_x', '.2f')} |"
        )
    lines += [
        "",
        "Trawl speed x = Trawl's pages/s / the peer's (above 1: Trawl is faster); Trawl "
        "CPU/page x and PSS x = Trawl's / the peer's (below 1: Trawl uses less). CPU is the "
        "whole process tree's (Chromium, Playwright's driver, Python): on a shared machine "
        "the steadier figure. PSS divides memory shared between Chromium's processes among "
        "them.",
    ]
    invalid = [r for r in result["runs"] if not r["valid"]]
    if invalid:
        lines += ["", "Invalid runs:", ""]
        lines += [f"- {r['crawler']} round {r['round']}: {r['invalid_because']}" for r in invalid]
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.browser", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--only", help="comma-separated: " + ", ".join(ORDER))
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--server", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--keep", type=Path, help="copy each run's work dir here")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in ORDER if not args.only or n in args.only.split(",")]
    if not names:
        parser.error(f"--only names none of {', '.join(ORDER)}")
    for name in names:
        venv = CRAWLERS[name].venv
        if venv:
            ensure_venv(venv, log)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    site = jssite.generate(args.pages)
    from bench.run import _chromium_version

    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(
            ["python -m bench.browser", *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "concurrency": args.concurrency,
        "runs": args.runs,
        "chromium": _chromium_version() or "Chromium",
        "versions": {n: versions(CRAWLERS[n]) for n in names},
        "site": {
            "name": site.name,
            "pages": site.pages,
            "seed": site.seed,
            "links_per_page": round(site.total_links / site.pages),
        },
    }
    runs: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with SiteServer(site.root, prefer=args.server) as server:
        meta["server"] = server.describe()
        log(f"{site.pages}-page JS site {site.root} served by {server.describe()}")
        for round_no in range(1, args.runs + 1):
            for name in names:
                run = run_one(
                    name,
                    site,
                    server.base_url,
                    round_no=round_no,
                    concurrency=args.concurrency,
                    timeout_s=args.timeout,
                    keep=args.keep,
                )
                runs.append(run)
                log(describe(run))
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    result = {"meta": meta, "summary": summarize(runs, names), "runs": runs}
    table = markdown(result)
    print(table)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = meta["started_at"].replace(":", "").replace("-", "")
        (RESULTS / f"browser-js-{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "browser-js.md").write_text(table)
        log(f"saved {RESULTS / f'browser-js-{stamp}.json'} and {RESULTS / 'browser-js.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
