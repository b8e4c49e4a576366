"""An HTTP cache for writing workflows: ``trawl run --cache DIR``, ``trawl preview --cache DIR``.

Iterating on selectors means running the same pages again and again; with a cache only the
first run touches the site. Every page a fetcher returns is stored under DIR (the final URL,
the status, the headers the crawl reads, and the HTML the nodes read: the response body, or
for the browser engine the rendered DOM), keyed by what changes the answer: the method, the
URL, the engine, the user agent, the request's own headers (not its credentials) and, for
the browser engine, ``wait_until`` and ``block_resources``. A later run with the same DIR
is served from it. robots.txt is kept the same way.

What is never served from the cache:

- a page of a phase with script nodes (``FetchRequest.live``): a stored copy has no live tab
  for their JavaScript, so the page is fetched (and stored for the other phases);
- a conditional request (a recrawl's ``If-None-Match``/``If-Modified-Since``);
- an entry older than ``ttl_s`` (when one is given), larger than the request's
  ``max_body_bytes``, written by another version of this format, or that cannot be read:
  each is a miss, fetched and written again, never a crash.

Failures (an HTTP error, a timeout) are not stored: the next run asks again. Credentials
(``Authorization`` and other headers named like one, headers whose value names a secret,
cookies, a login's session, a proxy) are not part of the key and not stored: a cached page
is served whoever is logged in. A hit sends no request, so it takes no politeness permit
(``Fetcher.stored``). Entries are written atomically (a
temporary file renamed into place) and the cache is not pruned: DIR grows by up to
``max_body_bytes`` per page; delete it to start afresh.

This is a tool for one user's machine: only the embedded commands compose it
(trawl/embedded.py), never a shared worker, so nothing stored crosses tenants.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import PermanentError
from backends.fetcher import Document, DocumentFetcher, Fetcher, FetchRequest
from nodes.page import Page
from worker.robots import RobotsFetch
from workflows.secrets import secret_names
from workflows.spec import Workflow

FORMAT = 1  # entries of another format are misses
# The response headers the crawl reads (the record's media type, a recrawl's validators).
KEPT_HEADERS = ("content-type", "content-language", "etag", "last-modified")
# Request headers that carry credentials: left out of the key (and never stored).
_CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|secret|password|session|api-?key", re.I)
_CONDITIONAL_HEADERS = frozenset({"if-none-match", "if-modified-since"})
# Room for the JSON around an entry's HTML when its file size is checked before reading.
_ENTRY_OVERHEAD_BYTES = 64 * 1024
# Entries read ahead by ``peek`` for the ``open`` that follows it.
_PEEKED_MAX = 64


class _Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One stored answer. ``request`` is what it was keyed by, for people reading DIR."""

    format: int
    request: dict[str, Any]
    final_url: str
    status: int
    headers: dict[str, str]
    html: str
    stored_at: float


_decoder = msgspec.json.Decoder(_Entry)
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class CacheStats:
    """What the cache did in one run: answers served from DIR (``hits``), fetched because
    nothing usable was stored (``misses``; ``unreadable`` of them had a corrupt entry),
    fetched because they may not be served from it (``bypassed``: script phases,
    conditional requests) and entries written (``stored``)."""

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    stored: int = 0
    unreadable: int = 0

    def describe(self) -> str:
        """One line for the run's summary."""
        line = f"{self.hits} hits, {self.misses} misses"
        if self.bypassed:
            line += f", {self.bypassed} fetched past it (script phases, conditional requests)"
        if self.unreadable:
            line += f", {self.unreadable} unreadable entries replaced"
        return line


class HttpCache:
    """Stored answers under ``root``, one JSON file each: ``root/ab/abcd….json``."""

    def __init__(
        self,
        root: Path,
        *,
        ttl_s: float | None = None,
        clock: Clock | None = None,
        private_headers: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.ttl_s = ttl_s
        # Request headers left out of the key besides the usual credentials: those whose
        # value names a secret (``secret_headers``).
        self._private = frozenset(name.lower() for name in private_headers)
        self.stats = CacheStats()
        self._clock = clock or SystemClock()
        # What ``peek`` read (a page, or None for a miss), for the ``open`` that follows.
        self._peeked: OrderedDict[str, Page | None] = OrderedDict()

    def fetcher(self, inner: Fetcher, engine: str) -> CachingFetcher:
        """``inner`` (the fetcher of ``engine``) answering from this cache when it can."""
        return CachingFetcher(inner, self, engine)

    def wrap(self, fetchers: Mapping[str, Fetcher]) -> dict[str, Fetcher]:
        """Every engine's fetcher behind this cache."""
        return {engine: self.fetcher(f, engine) for engine, f in fetchers.items()}

    def robots(self, fetch: RobotsFetch) -> RobotsFetch:
        """A robots.txt fetch answering from this cache: a robots.txt is stored with its
        status, unless the server failed (5xx) or could not be reached."""

        async def cached(url: str, user_agent: str) -> tuple[int, str]:
            key = _digest({"method": "GET", "url": url, "robots_txt": True, "ua": user_agent})
            entry = await self._read(key, max_bytes=None)
            if entry is not None:
                self.stats.hits += 1
                return entry.status, entry.html
            self.stats.misses += 1
            status, text = await fetch(url, user_agent)
            if status < 500:
                request = {"url": url, "robots_txt": True, "user_agent": user_agent}
                await self._write(key, self._entry(request, url, status, {}, text))
            return status, text

        return cached

    # -- pages

    def key_of(self, request: FetchRequest, engine: str) -> str | None:
        """The key of a request's answer; None when it must not be served from the cache
        (the nodes need the live page, or the request is conditional)."""
        if request.live or any(h.lower() in _CONDITIONAL_HEADERS for h in request.headers):
            return None
        return _digest(_keyed(request, engine, self._private))

    async def peek(self, request: FetchRequest, engine: str) -> bool:
        """Whether ``request`` would be answered from the cache; what was read is kept for
        the ``open`` that follows (a few at most), so an entry is read once."""
        key = self.key_of(request, engine)
        if key is None:
            return False
        if key in self._peeked:
            return self._peeked[key] is not None
        page = await self.get(key, request)
        self._peeked[key] = page
        while len(self._peeked) > _PEEKED_MAX:
            self._peeked.popitem(last=False)
        return page is not None

    async def get(self, key: str, request: FetchRequest) -> Page | None:
        """The stored page of ``key``, or None (nothing stored, too old, too large for
        ``request``, unreadable)."""
        if key in self._peeked:
            return self._peeked.pop(key)
        entry = await self._read(key, max_bytes=request.max_body_bytes)
        if entry is None:
            return None
        return Page(
            url=entry.final_url,
            html=entry.html,
            status=entry.status,
            headers=dict(entry.headers),
            requested_url=request.url,
        )

    async def put(self, key: str, request: FetchRequest, engine: str, page: Page) -> None:
        """Store ``page`` as the answer of ``key``, unless it is larger than the request's
        ``max_body_bytes``. A cache that cannot be written is no reason to fail the page."""
        if len(page.html.encode("utf-8", "replace")) > request.max_body_bytes:
            return
        headers = {k: page.headers[k] for k in KEPT_HEADERS if k in page.headers}
        keyed = _keyed(request, engine, self._private)
        entry = self._entry(keyed, page.url, page.status, headers, page.html)
        await self._write(key, entry)

    # -- files

    def path_of(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _entry(
        self,
        request: dict[str, Any],
        final_url: str,
        status: int,
        headers: dict[str, str],
        html: str,
    ) -> _Entry:
        now = self._clock.wall().timestamp()
        return _Entry(
            format=FORMAT,
            request=request,
            final_url=final_url,
            status=status,
            headers=headers,
            html=html,
            stored_at=now,
        )

    async def _read(self, key: str, *, max_bytes: int | None) -> _Entry | None:
        path = self.path_of(key)
        limit = None if max_bytes is None else 2 * max_bytes + _ENTRY_OVERHEAD_BYTES
        try:
            data = await asyncio.to_thread(_read_file, path, limit)
            if data is None:  # nothing stored, or too big to be an entry of this request
                return None
            entry = _decoder.decode(data)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            self.stats.unreadable += 1  # fetched again and written over
            return None
        if entry.format != FORMAT:
            return None
        if self.ttl_s is not None and self._clock.wall().timestamp() - entry.stored_at > self.ttl_s:
            return None
        if max_bytes is not None and len(entry.html.encode("utf-8", "replace")) > max_bytes:
            return None
        return entry

    async def _write(self, key: str, entry: _Entry) -> None:
        try:
            await asyncio.to_thread(_write_atomically, self.path_of(key), _encoder.encode(entry))
        except OSError:
            return  # a full disk, a read-only DIR: the page was fetched all the same
        self.stats.stored += 1


class CachingFetcher(Fetcher):
    """A fetcher answering from an ``HttpCache`` when it can, else fetching with ``inner``
    and storing what it got. ``inner`` is started and closed by whoever opened it."""

    def __init__(self, inner: Fetcher, cache: HttpCache, engine: str) -> None:
        self.inner = inner
        self._cache = cache
        self._engine = engine

    async def stored(self, request: FetchRequest) -> bool:
        return await self._cache.peek(request, self._engine)

    async def fetch_document(self, request: FetchRequest) -> Document:
        """Bodies that are not pages (a sitemap, a proxy provider's list) go to the site
        uncached: the cache is for iterating on the nodes, which never see them."""
        if not isinstance(self.inner, DocumentFetcher):
            raise PermanentError(
                f"{request.url}: the {self._engine} engine cannot fetch documents",
                error_class="unsupported",
            )
        return await self.inner.fetch_document(request)

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        cache = self._cache
        key = cache.key_of(request, self._engine)
        if key is None:
            cache.stats.bypassed += 1
        else:
            page = await cache.get(key, request)
            if page is not None:
                cache.stats.hits += 1
                yield page
                return
            cache.stats.misses += 1
        async with self.inner.open(request) as page:
            if key is not None:
                await cache.put(key, request, self._engine, page)
            yield page


def secret_headers(workflow: Workflow) -> frozenset[str]:
    """The names of the workflow's request headers whose value names a secret."""
    return frozenset(
        name.lower() for name, value in workflow.fetch.headers.items() if secret_names(value)
    )


def _keyed(request: FetchRequest, engine: str, private: frozenset[str]) -> dict[str, Any]:
    """What a request's answer depends on, without its credentials."""
    headers = sorted(
        (name.lower(), value)
        for name, value in request.headers.items()
        if not _CREDENTIAL_HEADER.search(name) and name.lower() not in private
    )
    keyed: dict[str, Any] = {
        "method": "GET",
        "url": request.url,
        "engine": engine,
        "user_agent": request.user_agent,
        "headers": headers,
    }
    if engine == "browser":
        keyed["wait_until"] = request.wait_until
        keyed["block_resources"] = sorted(request.block_resources)
    return keyed


def _digest(keyed: dict[str, Any]) -> str:
    return hashlib.sha256(msgspec.json.encode(keyed, order="sorted")).hexdigest()


def _read_file(path: Path, limit: int | None) -> bytes | None:
    """The file's bytes; None when there is none, or it is larger than ``limit``."""
    try:
        with path.open("rb") as file:
            if limit is not None and os.fstat(file.fileno()).st_size > limit:
                return None
            return file.read()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place, so a
    reader sees the old entry or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
