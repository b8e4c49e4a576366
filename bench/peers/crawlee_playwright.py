"""Crawlee for Python's PlaywrightCrawler on the system Chromium, 32 pages in flight.

    python crawlee_playwright.py START_URL OUT.jsonl [--concurrency 32] [--chromium PATH]
"""
import argparse
import asyncio
import json
import logging

from crawlee import ConcurrencySettings
from crawlee.crawlers import PlaywrightCrawler, PlaywrightCrawlingContext
from crawlee.storage_clients import MemoryStorageClient

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


async def main(start: str, out: str, concurrency: int, chromium: str) -> None:
    crawler = PlaywrightCrawler(
        storage_client=MemoryStorageClient(),
        concurrency_settings=ConcurrencySettings(
            max_concurrency=concurrency, desired_concurrency=concurrency
        ),
        headless=True,
        browser_launch_options={"executable_path": chromium, "args": CHROMIUM_ARGS},
        max_request_retries=2,
        configure_logging=False,
    )

    @crawler.router.default_handler
    async def handler(context: PlaywrightCrawlingContext) -> None:
        title = await context.page.title()
        await context.push_data({"url": context.request.url, "title": title})
        await context.enqueue_links(strategy="same-hostname")

    await crawler.run([start])
    dataset = await crawler.get_dataset()
    with open(out, "w", encoding="utf-8") as f:
        async for item in dataset.iterate_items():
            f.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.start, args.out, args.concurrency, args.chromium))
