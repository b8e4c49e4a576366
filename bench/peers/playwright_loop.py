"""The floor a browser crawler is compared with: Playwright and an asyncio loop, nothing else.

    python playwright_loop.py START_URL OUT.jsonl [--concurrency 8] [--chromium PATH]
        [--wait-until load]

One headless Chromium (the system's, Trawl's flags), one context, ``concurrency`` tabs,
each reused for every page it is given: workers over an asyncio.Queue with a seen-set;
each navigates (page.goto, Playwright's default wait for ``load``), reads the title and
the same-host links with one page.evaluate, writes one JSON line and queues the unseen
links (fragments dropped). No request interception, nothing blocked: what a user writes
first.
"""
import argparse
import asyncio
import json
from urllib.parse import urldefrag, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
READ = "() => [document.title, Array.from(document.querySelectorAll('a[href]'), a => a.href)]"


async def crawl(start: str, out_path: str, concurrency: int, chromium: str, wait: str) -> None:
    host = urlsplit(start).netloc
    queue: asyncio.Queue[str] = asyncio.Queue()
    seen = {start}
    queue.put_nowait(start)
    out = open(out_path, "w", encoding="utf-8")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context()

        async def worker() -> None:
            page = await context.new_page()
            while True:
                url = await queue.get()
                try:
                    for attempt in range(2):
                        try:
                            await page.goto(url, wait_until=wait, timeout=30_000)
                            title, links = await page.evaluate(READ)
                            break
                        except PlaywrightError as exc:
                            if attempt:
                                raise
                            print(f"retrying {url}: {exc.message.splitlines()[0]}")
                    out.write(json.dumps({"url": url, "title": title}) + "\n")
                    for href in links:
                        link = urldefrag(href)[0]
                        if link not in seen and urlsplit(link).netloc == host:
                            seen.add(link)
                            queue.put_nowait(link)
                except PlaywrightError as exc:
                    print(f"failed {url}: {exc.message.splitlines()[0]}")
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await queue.join()
        for w in workers:
            w.cancel()
        await browser.close()
    out.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--wait-until", default="load")
    args = parser.parse_args()
    asyncio.run(crawl(args.start, args.out, args.concurrency, args.chromium, args.wait_until))
