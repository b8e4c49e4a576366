"""What the SSRF guard costs the browser engine: the same pages fetched by BrowserFetcher
without the guard and behind its checking SOCKS5 proxy (``GuardProxy``), interleaved.

The site is bench.docsite's generated documentation (10-80 KB pages) from nginx on
127.0.0.1; the guarded runs exempt 127.0.0.0/8 so they may reach it, which still sends
every connection through the proxy.

    .venv/bin/python -m bench.browser_guard [--pages 200] [--runs 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import time

from backends.fetcher import FetchRequest
from bench.docsite import generate
from bench.serve import SiteServer
from trawl.settings import Settings
from worker.fetchers.browser import BrowserFetcher
from worker.netguard import NetGuard


async def crawl(urls: list[str], guard: NetGuard | None, concurrency: int) -> float:
    """Pages per second fetching ``urls`` (title read from each) with ``concurrency`` tabs."""
    fetcher = BrowserFetcher(executable_path=Settings().chromium(), guard=guard)
    await fetcher.start()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)

    async def one_tab() -> None:
        while not queue.empty():
            url = queue.get_nowait()
            async with fetcher.open(FetchRequest(url=url)) as page:
                assert page.css_first("title") is not None, url

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one_tab() for _ in range(concurrency)))
        return len(urls) / (time.perf_counter() - started)
    finally:
        await fetcher.close()


async def main_async(args: argparse.Namespace) -> None:
    site = generate(max(args.pages, 100), name=f"guard-{args.pages}")
    guard = NetGuard(allow_private=False, exempt=[ipaddress.ip_network("127.0.0.0/8")])
    with SiteServer(site.root) as server:
        urls = [server.base_url + p for p in site.paths()[: args.pages]]
        results: dict[str, list[float]] = {"no guard": [], "guard proxy": []}
        for _ in range(args.runs):
            results["no guard"].append(await crawl(urls, None, args.concurrency))
            results["guard proxy"].append(await crawl(urls, guard, args.concurrency))
    print(f"{args.pages} pages, {args.concurrency} tabs, {args.runs} interleaved runs each")
    print("| browser fetcher | pages/s (median) | range |")
    print("|---|---:|---|")
    for name, rates in results.items():
        print(f"| {name} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} |")
    base, guarded = (statistics.median(r) for r in results.values())
    print(f"guard proxy / no guard: {guarded / base:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
