"""Which HTTP client should the http engine use, and what does the engine itself cost?

Fetches the same N pages (generated documentation HTML, 10-80 KB, from bench.parsers) from a
local static server with 32 requests in flight, through: bare aiohttp, httpx.AsyncClient,
and Trawl's HttpFetcher (aiohttp plus status/type checks, capped read, charset decoding,
the Page); then the same with link extraction (bare aiohttp + selectolax vs HttpFetcher +
Page.css), which is the loop the crawl's throughput is compared against.

The server is deliberately cheap (a raw asyncio protocol answering from memory, in
``--server-procs`` forked processes sharing one listening socket) so the client is what
is measured. On a 2-core machine one server process leaves the other core to the client.

    .venv/bin/python -m bench.http_clients [--requests 2000] [--concurrency 32]

httpx note: without the ``sniffio`` package, httpcore attempts (and fails) ``import sniffio``
on every pool operation, a sys.path search each time; the table says when that applies.
Its connection pool also scans every connection per request, so it slows with concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.synchronize import Event as EventType
from typing import Any

from bench.parsers import make_pages

DISTINCT_PAGES = 200


# --- the server ---------------------------------------------------------------------------------


def _responses(pages: list[str]) -> dict[bytes, bytes]:
    out = {}
    for i, page in enumerate(pages):
        body = page.encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        out[f"/page/{i}".encode()] = head + body
    return out


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class _StaticProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 for GETs without bodies: enough for a client benchmark."""

    def __init__(self, responses: dict[bytes, bytes]) -> None:
        self._responses = responses
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            request_line = buffer[: buffer.find(b"\r\n")]
            parts = request_line.split(b" ")
            path = parts[1] if len(parts) > 1 else b""
            self._transport.write(self._responses.get(path, _NOT_FOUND))
            buffer = buffer[end + 4 :]
        self._buffer = buffer


def _serve(sock: socket.socket, responses: dict[bytes, bytes], ready: EventType) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(lambda: _StaticProtocol(responses), sock=sock)
        ready.set()
        async with server:
            await stop.wait()

    asyncio.run(run())


class StaticServer:
    """Forked server processes sharing one listening socket on 127.0.0.1."""

    def __init__(self, pages: list[str], processes: int) -> None:
        self._responses = _responses(pages)
        self._processes = processes
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self.port = 0

    def __enter__(self) -> StaticServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")  # children inherit the socket and pages
        events = []
        for _ in range(self._processes):
            ready = ctx.Event()
            proc = ctx.Process(target=_serve, args=(sock, self._responses, ready), daemon=True)
            proc.start()
            self._procs.append(proc)
            events.append(ready)
        sock.close()  # the children hold it
        for ready in events:
            if not ready.wait(10):
                raise RuntimeError("benchmark server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(10)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/page/{i % DISTINCT_PAGES}"


# --- the clients --------------------------------------------------------------------------------

Fetch = Callable[[str], Awaitable[int]]  # returns bytes read, or links found


async def _drive(fetch: Fetch, urls: list[str], concurrency: int) -> tuple[float, int]:
    """Fetch every URL with ``concurrency`` workers; (seconds, total of what fetch returned)."""
    queue = iter(urls)
    total = 0

    async def worker() -> None:
        nonlocal total
        for url in queue:  # a shared iterator: each URL taken exactly once
            total += await fetch(url)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, total


async def bench_aiohttp(urls: list[str], concurrency: int, parse: bool) -> tuple[float, int]:
    import aiohttp
    from selectolax.lexbor import LexborHTMLParser

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(url: str) -> int:
            async with session.get(url) as resp:
                body = await resp.read()
            if not parse:
                return len(body)
            tree = LexborHTMLParser(body.decode("utf-8", "replace"))
            return len([a.attrs.get("href") for a in tree.css("a[href]")])

        await _drive(fetch, urls[: concurrency * 4], concurrency)  # warm the pool
        return await _drive(fetch, urls, concurrency)


async def bench_httpx(urls: list[str], concurrency: int, parse: bool) -> tuple[float, int]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def fetch(url: str) -> int:
            resp = await client.get(url)
            return len(resp.content)

        await _drive(fetch, urls[: concurrency * 4], concurrency)
        return await _drive(fetch, urls, concurrency)


async def bench_trawl(urls: list[str], concurrency: int, parse: bool) -> tuple[float, int]:
    from backends.fetcher import FetchRequest
    from worker.fetchers.http import HttpFetcher

    fetcher = HttpFetcher(limit=concurrency)
    await fetcher.start()
    try:

        async def fetch(url: str) -> int:
            async with fetcher.open(FetchRequest(url)) as page:
                if not parse:
                    return len(page.html)
                return len([a.attr("href") for a in page.css("a[href]")])

        await _drive(fetch, urls[: concurrency * 4], concurrency)
        return await _drive(fetch, urls, concurrency)
    finally:
        await fetcher.close()


Runner = Callable[[list[str], int, bool], Coroutine[Any, Any, tuple[float, int]]]
CLIENTS: list[tuple[str, Runner, bool]] = [
    ("aiohttp (bytes)", bench_aiohttp, False),
    ("httpx AsyncClient (bytes)", bench_httpx, False),
    ("trawl HttpFetcher (Page)", bench_trawl, False),
    ("aiohttp + lexbor a[href]", bench_aiohttp, True),
    ("HttpFetcher + Page.css a[href]", bench_trawl, True),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server-procs", type=int, default=1)
    parser.add_argument("--only", action="append", help="substring of a client name")
    args = parser.parse_args(argv)

    pages = make_pages(DISTINCT_PAGES, seed=2)
    mean_kb = sum(len(p.encode()) for p in pages) / len(pages) / 1024
    with StaticServer(pages, args.server_procs) as server:
        urls = [server.url(i) for i in range(args.requests)]
        print(
            f"{args.requests} GETs of {DISTINCT_PAGES} distinct pages (mean {mean_kb:.0f} KB), "
            f"{args.concurrency} in flight, {args.server_procs} server process(es), "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{'client':<32}{'pages/s':>10}{'MB/s':>9}{'seconds':>9}")
        for name, run, parse in CLIENTS:
            if args.only and not any(o in name for o in args.only):
                continue
            seconds, _ = asyncio.run(run(urls, args.concurrency, parse))
            rate = args.requests / seconds
            note = ""
            if "httpx" in name and importlib.util.find_spec("sniffio") is None:
                note = "  (no sniffio: a failed import per pool operation)"
            print(f"{name:<32}{rate:>10.0f}{rate * mean_kb / 1024:>9.1f}{seconds:>9.2f}{note}")


if __name__ == "__main__":
    main()
