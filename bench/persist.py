"""What keeping a run resumable costs: `trawl run`'s runtime with its SQLite store (the
default, so that `--resume` can continue it) and without, on the same generated site,
runs interleaved so that both see the same machine.

    .venv/bin/python -m bench.persist [--pages 2000] [--runs 3] [--concurrency 32]

Prints pages per second and CPU per page (this process: parsing, the runtime, the store)
for each setting, and writes bench/results/persist.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.docsite import generate
from bench.serve import SiteServer
from trawl.embedded import open_fetchers
from trawl.settings import Settings
from worker.embedded import run_embedded
from workflows import validate_data

RESULTS = Path(__file__).resolve().parent / "results" / "persist.json"


def workflow(base_url: str, pages: int) -> Any:
    return validate_data(
        {
            "name": "persist-bench",
            "start_urls": [f"{base_url}/index.html"],
            "engine": "http",
            "max_depth": 50,
            "max_pages": pages,
            "politeness": {
                "requests_per_second": 100_000,
                "burst": 1000,
                "max_concurrency_per_host": 64,
                "respect_robots_txt": False,
            },
            "phases": [
                {
                    "name": "page",
                    "nodes": [
                        {"type": "extract", "fields": {"title": "h1"}},
                        {"type": "extract_links"},
                    ],
                }
            ],
        }
    )


async def one_run(spec: Any, persist: bool, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="trawl-persist-") as out:
        async with open_fetchers(spec, Settings()) as (fetchers, robots):
            wall, cpu = time.perf_counter(), time.process_time()
            result = await run_embedded(
                spec,
                out_dir=Path(out),
                fetchers=fetchers,
                robots=robots,
                concurrency=concurrency,
                persist=persist,
                progress_interval_s=1.0,
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pages = result.progress.finished
    if result.execution.status != "completed" or pages == 0:
        raise SystemExit(f"the crawl did not complete: {result.execution.status}, {pages} pages")
    return {"pages": pages, "pages_per_s": pages / wall, "cpu_ms_per_page": cpu / pages * 1e3}


async def compare(base_url: str, pages: int, runs: int, concurrency: int) -> dict[str, Any]:
    spec = workflow(base_url, pages)
    found: dict[str, list[dict[str, float]]] = {"memory only": [], "sqlite store": []}
    for _ in range(runs):
        for label, persist in (("memory only", False), ("sqlite store", True)):
            found[label].append(await one_run(spec, persist, concurrency))
    return {
        label: {
            "pages": samples[0]["pages"],
            "pages_per_s_median": round(statistics.median(s["pages_per_s"] for s in samples), 1),
            "cpu_ms_per_page_median": round(
                statistics.median(s["cpu_ms_per_page"] for s in samples), 3
            ),
            "runs": len(samples),
        }
        for label, samples in found.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    site = generate(args.pages)
    with SiteServer(site.root) as server:
        print(f"{args.pages}-page site served by {server.describe()}")
        figures = asyncio.run(compare(server.base_url, args.pages, args.runs, args.concurrency))
    for label, row in figures.items():
        print(
            f"{label:>13}: {row['pages_per_s_median']:7.1f} pages/s, "
            f"{row['cpu_ms_per_page_median']:.3f} ms CPU/page ({row['runs']} runs)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"pages": args.pages, "results": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
