"""The synthetic site bench/capacity.py crawls: pages made in memory, no network.

A capacity run measures what the backends see per page, so the site must cost nothing but
a fixed, known amount: ``SyntheticFetcher`` answers every URL after a fixed delay (a
site's response time, spent waiting, not computing) and a fixed spin of CPU (what the
http engine's read and decode would cost), with a page generated from the URL alone.

The link graph keeps the queue busy without flooding it. Pages are numbered; page ``n``
of a site of width ``W`` links to

- ``n + W``, the next page of its chain (always new),
- while ``n < W``, its children ``4n+1 .. 4n+4`` below ``W`` (a 4-ary tree that fans the
  crawl out to ``W`` chains in a few levels),
- the home page and, from ``n >= W``, ``n - W`` (both seen already: they exercise the
  seen-set's "not new" answer).

So after the fan-out each page crawled discovers exactly one new page: the crawl keeps
about ``W`` tasks outstanding, and tasks published per page stay near one, as in a long
real crawl whose frontier neither explodes nor dries up. A page budget (the workflow's
``max_pages``) ends a small execution.

URLs are ``http://<host>/w<W>/p<n>``, so the fetcher needs no state: any number of
executions and workers share one fetcher object per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from backends.errors import PermanentError
from backends.fetcher import Fetcher, FetchRequest
from nodes.page import Page

HOST = "synthetic.test"
FANOUT = 4
_PATH = re.compile(r"^https?://[^/]+/w(\d+)/p(\d+)$")

WORKFLOW = """\
name: {name}
start_urls: [{start}]
engine: http
max_depth: 1000000
max_pages: {max_pages}
politeness:
  requests_per_second: 100000
  burst: 100000
  max_concurrency_per_host: 100000
  respect_robots_txt: false
retries: {{max_attempts: 2, backoff_s: 0.1}}
phases:
  - name: page
    nodes:
      - type: extract
        fields: {{title: title}}
      - type: extract_links
"""


def start_url(width: int, host: str = HOST) -> str:
    """The home page of a site of ``width`` chains."""
    return f"http://{host}/w{width}/p0"


def workflow_text(name: str, *, width: int, max_pages: int = 0) -> str:
    """A one-phase workflow (title + every link) over the synthetic site; ``max_pages`` 0:
    no budget (the crawl runs until the workers are stopped)."""
    return WORKFLOW.format(name=name, start=start_url(width), max_pages=max_pages)


def links_of(width: int, n: int) -> list[int]:
    """The page numbers page ``n`` links to, new ones first."""
    out = [n + width]
    if n < width:
        out += [c for c in range(FANOUT * n + 1, FANOUT * n + FANOUT + 1) if c < width]
    out.append(0)
    if n >= width:
        out.append(n - width)
    return out


def page_html(width: int, n: int, host: str = HOST) -> str:
    """Page ``n``: a title, a heading, a paragraph and its links, absolute and relative."""
    anchors = "".join(f'<li><a href="/w{width}/p{m}">page {m}</a></li>' for m in links_of(width, n))
    return (
        f"<!doctype html><html><head><title>Page {n}</title></head><body>"
        f"<h1>Page {n} of http://{host}/w{width}</h1>"
        "<p>A synthetic page of a capacity run: a fixed size, a fixed number of links.</p>"
        f"<ul>{anchors}</ul></body></html>"
    )


def parse_url(url: str) -> tuple[int, int]:
    """``(width, n)`` of a synthetic URL; PermanentError for any other URL (a 404)."""
    match = _PATH.match(url)
    if match is None:
        raise PermanentError(f"not a page of the synthetic site: {url}", error_class="http_404")
    return int(match.group(1)), int(match.group(2))


def spin(seconds: float) -> None:
    """Burn ``seconds`` of CPU on this thread (a stand-in for parsing a response)."""
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class SyntheticFetcher(Fetcher):
    """Every page after ``delay_s`` (waiting) and ``cpu_s`` (computing); counts fetches."""

    def __init__(self, *, delay_s: float, cpu_s: float) -> None:
        if delay_s < 0 or cpu_s < 0:
            raise ValueError(f"delay_s and cpu_s must be >= 0, not {delay_s} and {cpu_s}")
        self.delay_s = delay_s
        self.cpu_s = cpu_s
        self.fetches = 0

    def open(self, request: FetchRequest) -> AbstractAsyncContextManager[Page]:
        return self._open(request)

    @contextlib.asynccontextmanager
    async def _open(self, request: FetchRequest) -> AsyncIterator[Page]:
        width, n = parse_url(request.url)
        started = time.monotonic()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        spin(self.cpu_s)
        self.fetches += 1
        yield Page(
            url=request.url,
            html=page_html(width, n),
            status=200,
            headers={"content-type": "text/html; charset=utf-8"},
            requested_url=request.url,
            elapsed_s=time.monotonic() - started,
        )
