"""The floor a crawler framework is compared with: aiohttp + selectolax, one asyncio loop.

    python bare_loop.py START_URL OUT.jsonl [--concurrency 32]

32 workers over an asyncio.Queue with a seen-set; each fetches a page, reads its <title>,
writes one JSON line and queues the unseen same-host links (fragments dropped).
"""
import argparse, asyncio, json
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from selectolax.lexbor import LexborHTMLParser


async def crawl(start: str, out_path: str, concurrency: int) -> None:
    host = urlsplit(start).netloc
    queue: asyncio.Queue[str] = asyncio.Queue()
    seen = {start}
    queue.put_nowait(start)
    out = open(out_path, "w", encoding="utf-8")
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while True:
                url = await queue.get()
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and "html" in resp.headers.get("Content-Type", "")
                    if ok:
                        tree = LexborHTMLParser(body.decode("utf-8", "replace"))
                        node = tree.css_first("title")
                        title = node.text() if node is not None else None
                        out.write(json.dumps({"url": url, "title": title}) + "\n")
                        for a in tree.css("a[href]"):
                            link = urldefrag(urljoin(url, a.attrs.get("href") or ""))[0]
                            if link not in seen and urlsplit(link).netloc == host:
                                seen.add(link)
                                queue.put_nowait(link)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    print(f"failed {url}: {exc}")
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await queue.join()
        for w in workers:
            w.cancel()
    out.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(crawl(args.start, args.out, args.concurrency))
