"""Sitemaps as seeds: the tasks that are not pages, and what a worker does with them.

A workflow's ``sitemaps`` become tasks when the execution starts (worker/start.py): one
``sitemap`` task per URL given, and with ``robots_txt: true`` one ``robots_sitemaps`` task
per site (origin) of the start and sitemap URLs, which reads that robots.txt's ``Sitemap:``
lines and publishes them as ``sitemap`` tasks. Workers, never the orchestrator, fetch them:
the orchestrator must not reach tenants' sites, and a worker's fetch goes through the SSRF
guard, the host's politeness and robots.txt like any page's (robots.txt may disallow a
sitemap; it ends as filtered).

A sitemap task reads one file (``read``): gzip is recognised by its magic bytes whatever
the server calls it; XML is parsed by lxml as a stream, with no entity expansion, no DTD
and no network; a body that is not XML is a plain-text sitemap, one URL per line.

- a ``<sitemapindex>`` publishes its ``<sitemap><loc>`` entries as further sitemap tasks,
  one level deeper, up to ``MAX_NESTING`` levels;
- a ``<urlset>`` admits its ``<url><loc>`` entries as start URLs are (scope, canonical
  form, the seen set, ``max_pages``) at depth 0 in ``sitemaps.phase`` (default: the start
  phase), each task carrying its ``<lastmod>`` to the page's record; ``max_urls`` bounds
  how many the execution takes from its sitemaps, exactly across workers (``UrlQuota``).

Everything a sitemap can make a worker do is bounded: a file is at most ``MAX_BYTES``
uncompressed (the sitemaps protocol's 50 MB; a gzip bomb is refused as soon as its output
passes it, without holding it) and at most ``MAX_ENTRIES`` entries are read from it (the
protocol's 50,000); nesting stops at ``MAX_NESTING``; every seed task counts toward the
execution's ``max_pages`` like a page; ``PARSES_AT_ONCE`` files are parsed at once per
process. A bad file fails its task with a class of its own (``sitemap_invalid``,
``sitemap_too_large``) naming the sitemap URL, and never the execution.

Seed tasks write no record. Their phase is ``SEED_PHASE``, so every report counts them
apart from the workflow's phases, and their funnel row (``SEED_PHASE|``) has the stages
``robots_txt`` (robots.txt files read), ``listed`` (sitemap URLs found in robots.txt files
and indexes), ``fetched`` (sitemap files read), ``discovered`` (page URLs listed),
``in_scope``, ``new`` (queued) and ``over_limit`` (page URLs beyond ``max_urls`` and
nested sitemaps beyond ``MAX_NESTING``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin

from lxml import etree

from backends.errors import PermanentError
from backends.fetcher import Document, DocumentFetcher, Fetcher
from backends.seen import SeenSet
from backends.state import funnel_key
from backends.task import SEED_PHASE, Task, TaskKind
from worker.context import ExecutionContext
from worker.frontier import Frontier, claim_token
from worker.stages import Plan
from workflows.rules import Admit
from workflows.spec import Workflow
from workflows.urls import BadUrl, canonicalize, origin_of

# The sitemaps protocol's limits of one file (sitemaps.org/protocol.html): 50 MB
# uncompressed, 50,000 entries, URLs under 2,048 characters.
MAX_BYTES = 50 * 1024 * 1024
MAX_ENTRIES = 50_000
MAX_URL_CHARS = 2048
# An index may list indexes (the protocol says it should not; sites do): this many levels
# below a sitemap given or found in robots.txt are read, no more.
MAX_NESTING = 3
# A <lastmod> longer than this is no W3C datetime: left out rather than carried.
MAX_LASTMOD_CHARS = 64
# Sitemap files parsed at once per process: each holds up to MAX_BYTES of body.
PARSES_AT_ONCE = 2
# Tasks published per frontier call (each call is one registration and one publish).
PUBLISH_BATCH = 1000

SITEMAP_ACCEPT = "application/xml,text/xml;q=0.9,application/gzip;q=0.8,text/plain;q=0.7,*/*;q=0.5"
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 256 * 1024
_BOMS = (b"\xef\xbb\xbf",)


class SitemapInvalid(PermanentError):
    """A sitemap that cannot be read: not XML, not a sitemap, broken gzip."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"sitemap {url}: {why}", error_class="sitemap_invalid")


class SitemapTooLarge(PermanentError):
    """A sitemap over MAX_BYTES, compressed or not."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"sitemap {url} is larger than {MAX_BYTES} bytes uncompressed (the sitemaps "
            "protocol's limit)",
            error_class="sitemap_too_large",
        )


# -- parsing


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``<loc>`` of a sitemap (absolute, as written), with its ``<lastmod>``."""

    loc: str
    lastmod: str | None = None


@dataclass(slots=True)
class Parsed:
    """What one sitemap file lists: page URLs (``urlset``, plain text) or sitemaps
    (``sitemapindex``); ``skipped`` entries beyond MAX_ENTRIES or with no usable ``<loc>``."""

    kind: Literal["urlset", "sitemapindex"]
    entries: list[Entry] = field(default_factory=list)
    skipped: int = 0

    def add(self, loc: str | None, lastmod: str | None, base: str) -> None:
        loc = (loc or "").strip()
        if not loc or len(loc) > MAX_URL_CHARS or len(self.entries) >= MAX_ENTRIES:
            self.skipped += 1
            return
        lastmod = (lastmod or "").strip() or None
        if lastmod is not None and len(lastmod) > MAX_LASTMOD_CHARS:
            lastmod = None
        self.entries.append(Entry(urljoin(base, loc), lastmod))


def parse_sitemap(body: bytes, url: str) -> Parsed:
    """The entries of a sitemap file (gzipped or not; XML or plain text); ``url`` is where
    it was read from (relative ``<loc>``s are resolved against it, errors name it).
    SitemapInvalid or SitemapTooLarge when it cannot be read."""
    chunks = _decompressed(body, url)
    first = start = b""
    for chunk in chunks:  # up to the first byte that is not blank
        first += chunk
        start = first.lstrip(b" \t\r\n")
        for bom in _BOMS:
            start = start.removeprefix(bom).lstrip(b" \t\r\n")
        if start:
            break
    if not start:
        raise SitemapInvalid(url, "it is empty")
    if start.startswith(b"<"):
        return _parse_xml(first, chunks, url)
    return _parse_text(first, chunks, url)


def _decompressed(body: bytes, url: str) -> Iterator[bytes]:
    """The body in chunks, gunzipped when it starts with gzip's magic bytes (several
    members in a row too); SitemapTooLarge as soon as the output passes MAX_BYTES."""
    if not body.startswith(_GZIP_MAGIC):
        if len(body) > MAX_BYTES:
            raise SitemapTooLarge(url)
        for at in range(0, len(body), _CHUNK):
            yield body[at : at + _CHUNK]
        return
    total = 0
    data = body
    while data:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while not inflate.eof:
                out = inflate.decompress(data, _CHUNK)
                data = inflate.unconsumed_tail
                if not out and not data:
                    break
                total += len(out)
                if total > MAX_BYTES:
                    raise SitemapTooLarge(url)
                if out:
                    yield out
        except zlib.error as exc:
            raise SitemapInvalid(url, f"broken gzip data: {exc}") from None
        if not inflate.eof:
            raise SitemapInvalid(url, "the gzip data ends early")
        data = inflate.unused_data


def _parse_xml(first: bytes, rest: Iterator[bytes], url: str) -> Parsed:
    """A ``<urlset>`` or ``<sitemapindex>``, read as a stream: each entry is taken and its
    element dropped as soon as it ends, so memory holds the entries, not the tree."""
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
    )
    parsed: Parsed | None = None
    root: etree._Element | None = None
    try:
        for chunk in _chain(first, rest):
            parser.feed(chunk)
            for event, element in parser.read_events():
                if not isinstance(element, etree._Element):
                    continue  # only start and end events are asked for: always elements
                if root is None:
                    root, parsed = element, Parsed(_root_kind(element, url))
                    continue
                if event != "end" or parsed is None or element.getparent() is not root:
                    continue
                _take(parsed, element, url)
                element.clear()
                root.remove(element)
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise SitemapInvalid(url, f"not well-formed XML: {exc}") from None
    if parsed is None:
        raise SitemapInvalid(url, "no XML element in it")
    return parsed


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _local(element: etree._Element) -> str:
    """An element's name without its namespace (sitemaps in the wrong one are common)."""
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _root_kind(root: etree._Element, url: str) -> Literal["urlset", "sitemapindex"]:
    name = _local(root)
    if name == "urlset":
        return "urlset"
    if name == "sitemapindex":
        return "sitemapindex"
    raise SitemapInvalid(url, f"its root element is <{name}>, not <urlset> or <sitemapindex>")


def _take(parsed: Parsed, element: etree._Element, url: str) -> None:
    """Add the entry a finished ``<url>`` (of a urlset) or ``<sitemap>`` (of an index) is."""
    wanted = "url" if parsed.kind == "urlset" else "sitemap"
    if _local(element) != wanted:
        return  # an extension element (a namespace of its own) or a stray one
    loc = lastmod = None
    for child in element:
        name = _local(child)
        if name == "loc" and loc is None:
            loc = child.text
        elif name == "lastmod" and lastmod is None:
            lastmod = child.text
    parsed.add(loc, lastmod, url)


def _parse_text(first: bytes, rest: Iterator[bytes], url: str) -> Parsed:
    """A plain-text sitemap: one URL per line (UTF-8), blank lines ignored."""
    parsed = Parsed("urlset")
    pending = b""
    for chunk in _chain(first, rest):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            _text_line(parsed, line, url)
    _text_line(parsed, pending, url)
    return parsed


def _text_line(parsed: Parsed, line: bytes, url: str) -> None:
    text = line.decode("utf-8", errors="replace").strip().removeprefix("\ufeff")
    if text:
        parsed.add(text, None, url)


# -- the max_urls quota


class UrlQuota:
    """At most ``limit`` URLs taken from the sitemaps of one execution, exactly, whichever
    workers take them: each URL taken claims a numbered slot in the execution's seen set
    (``quota sitemap-urls <n>``, n < limit), which is atomic across workers. A process
    remembers, per execution, the lowest slot it has not yet found taken, so across all
    calls it probes each slot at most once. Slots are claimed under the taking task's
    token: a redelivered task finds its own slots free again and takes them back."""

    MAX_EXECUTIONS = 10_000  # remembered next slots; the oldest are forgotten beyond this

    def __init__(self, seen: SeenSet) -> None:
        self._seen = seen
        self._next: dict[str, int] = {}

    async def take(self, execution_id: str, wanted: int, limit: int, claimer: str) -> int:
        """How many of ``wanted`` URLs may be taken (slots claimed now)."""
        start = self._next.get(execution_id, 0)
        got = 0
        at = start
        while got < wanted and at < limit:
            end = min(limit, at + wanted - got)
            keys = [f"quota sitemap-urls {n}" for n in range(at, end)]
            fresh = await self._seen.add_new(execution_id, keys, claimer=claimer)
            got += sum(fresh)
            at = end
        if len(self._next) >= self.MAX_EXECUTIONS and execution_id not in self._next:
            del self._next[next(iter(self._next))]
        self._next[execution_id] = at
        return got


# -- reading seed tasks


@dataclass(slots=True)
class SeedRead:
    """What reading one seed task found: its funnel counts and warnings."""

    funnel: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)

    def count(self, stage: str, n: int = 1) -> None:
        if n:
            self.funnel[funnel_key(stage, SEED_PHASE, None)] += n


def target_phase(ctx: ExecutionContext) -> str:
    """The phase pages listed in sitemaps are crawled in: ``sitemaps.phase``, else the
    start phase."""
    settings = ctx.workflow.sitemap_settings
    phase = settings.phase if settings is not None else None
    return phase or ctx.workflow.first_phase


def seed_plan(ctx: ExecutionContext, task: Task) -> Plan:
    """A seed task's plan: the http engine (a sitemap needs no browser), a request that
    accepts XML, gzip and text up to MAX_BYTES, and the host's rate policy."""
    request = ctx.request(task.url)
    request = dataclasses.replace(
        request, max_body_bytes=MAX_BYTES, headers={**request.headers, "Accept": SITEMAP_ACCEPT}
    )
    phase = ctx.phases[target_phase(ctx)]
    return Plan(ctx, task, phase, "http", request, ctx.policy)


def robots_url(url: str) -> str | None:
    """The robots.txt URL of ``url``'s site, None when it has none (no http(s) origin)."""
    origin = origin_of(url)
    return f"{origin}/robots.txt" if origin else None


def seed_admits(urls: Sequence[str], depth: int = 0) -> list[Admit]:
    """Sitemap or robots.txt URLs as seed admits: canonical (ones that cannot be made so
    are left out), each once."""
    admits: dict[str, Admit] = {}
    for url in urls:
        try:
            canonical = canonicalize(url)
        except BadUrl:
            continue
        admits.setdefault(canonical, Admit(canonical, SEED_PHASE, depth, None))
    return list(admits.values())


def start_seeds(workflow: Workflow) -> list[tuple[TaskKind, list[Admit]]]:
    """The seed tasks an execution starts with, by kind: its ``sitemaps.urls``, and with
    ``sitemaps.robots_txt`` the robots.txt of every site of its start and sitemap URLs."""
    settings = workflow.sitemap_settings
    if settings is None:
        return []
    seeds: list[tuple[TaskKind, list[Admit]]] = [("sitemap", seed_admits(settings.urls))]
    if settings.robots_txt:
        sites = [robots_url(u) for u in [*workflow.start_urls, *settings.urls]]
        seeds.append(("robots_sitemaps", seed_admits([u for u in sites if u is not None])))
    return [(kind, admits) for kind, admits in seeds if admits]


class SitemapReader:
    """Fetches and reads seed tasks for the task processor (worker/process.py), which holds
    the politeness permit and asks robots.txt around ``fetch``, as for a page."""

    def __init__(self, frontier: Frontier, fetchers: Mapping[str, Fetcher]) -> None:
        self._frontier = frontier
        self._fetchers = fetchers
        self._quota = UrlQuota(frontier.seen)
        self._parsing = asyncio.Semaphore(PARSES_AT_ONCE)

    async def fetch(self, plan: Plan) -> Document:
        """The sitemap's body, through the http engine (guard, redirects, error classes)."""
        fetcher = self._fetchers.get("http")
        if not isinstance(fetcher, DocumentFetcher):
            raise PermanentError(
                f"sitemap {plan.task.url}: this worker's http engine cannot fetch documents",
                error_class="sitemap_unsupported",
            )
        try:
            return await fetcher.fetch_document(plan.request)
        except PermanentError as exc:
            if exc.error_class == "too_large":
                raise SitemapTooLarge(plan.task.url) from None
            raise

    async def read(self, plan: Plan, document: Document) -> SeedRead:
        """Parse a fetched sitemap and publish what it lists: its pages, or its sitemaps."""
        task = plan.task
        async with self._parsing:  # the thread holds the body and the parser's state
            parsed = await asyncio.to_thread(parse_sitemap, document.body, document.url)
        read = SeedRead()
        read.count("fetched")
        if parsed.skipped:
            read.warnings["sitemap_entries_skipped"] += parsed.skipped
        if parsed.kind == "sitemapindex":
            await self._nested(plan.ctx, task, parsed.entries, read)
        else:
            await self._pages(plan.ctx, task, parsed.entries, read)
        return read

    async def from_robots(self, ctx: ExecutionContext, task: Task, lines: list[str]) -> SeedRead:
        """Publish the ``Sitemap:`` lines of a robots.txt (relative ones resolved against
        it) as sitemap tasks."""
        read = SeedRead()
        read.count("robots_txt")
        read.count("listed", len(lines))
        urls = [urljoin(task.url, line.strip()) for line in lines[:MAX_ENTRIES]]
        await self._publish_seeds(ctx, task, seed_admits(urls, depth=0))
        return read

    async def _nested(
        self, ctx: ExecutionContext, task: Task, entries: list[Entry], read: SeedRead
    ) -> None:
        read.count("listed", len(entries))
        if task.depth >= MAX_NESTING:
            if entries:
                read.warnings["sitemap_nested_too_deep"] += 1
                read.count("over_limit", len(entries))
            return
        admits = seed_admits([e.loc for e in entries], depth=task.depth + 1)
        await self._publish_seeds(ctx, task, admits)

    async def _publish_seeds(self, ctx: ExecutionContext, task: Task, admits: list[Admit]) -> None:
        for at in range(0, len(admits), PUBLISH_BATCH):
            batch = admits[at : at + PUBLISH_BATCH]
            await self._frontier.publish(ctx, batch, parent=task, kind="sitemap")

    async def _pages(
        self, ctx: ExecutionContext, task: Task, entries: list[Entry], read: SeedRead
    ) -> None:
        """Admit a urlset's pages as start URLs are, in the target phase, within max_urls."""
        read.count("discovered", len(entries))
        phase = target_phase(ctx)
        admits: dict[str, Admit] = {}
        lastmod: dict[str, str] = {}
        for entry in entries:
            decision = ctx.rules.start(entry.loc)
            if not isinstance(decision, Admit) or decision.url in admits:
                continue
            admits[decision.url] = Admit(decision.url, phase, 0, None)
            if entry.lastmod is not None:
                lastmod[decision.url] = entry.lastmod
        read.count("in_scope", len(admits))
        chosen = list(admits.values())
        settings = ctx.workflow.sitemap_settings
        limit = settings.max_urls if settings is not None else 0
        if limit and chosen:
            token = claim_token(task.ledger_key)
            allowed = await self._quota.take(ctx.execution.id, len(chosen), limit, token)
            read.count("over_limit", len(chosen) - allowed)
            chosen = chosen[:allowed]
        for at in range(0, len(chosen), PUBLISH_BATCH):
            batch = chosen[at : at + PUBLISH_BATCH]
            published = await self._frontier.publish(ctx, batch, parent=task, lastmod=lastmod)
            read.count("new", len(published))
