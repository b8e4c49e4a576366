"""Crawlee for Python's ParselCrawler: in-memory storage, 32 requests in flight.

    python crawlee_parsel.py START_URL OUT.jsonl [--concurrency 32]
"""
import argparse
import asyncio
import json
import logging

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
from crawlee.storage_clients import MemoryStorageClient


async def main(start: str, out: str, concurrency: int) -> None:
    crawler = ParselCrawler(
        storage_client=MemoryStorageClient(),
        concurrency_settings=ConcurrencySettings(
            max_concurrency=concurrency, desired_concurrency=concurrency
        ),
        max_request_retries=2,
        configure_logging=False,
    )

    @crawler.router.default_handler
    async def handler(context: ParselCrawlingContext) -> None:
        title = context.selector.css("title::text").get()
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.start, args.out, args.concurrency))
