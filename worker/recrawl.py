"""Incremental recrawls: an execution that goes over a previous one's pages again, asks the
site only whether they changed, and marks each record ``new``, ``changed`` or ``unchanged``.

Three steps, each where the runtime already does the like (docs/recrawls.md):

- **Seeding** (``seed``, from worker/start.py): every record of the previous execution's
  export is published as a task of the new one, with its URL, phase, depth, marker and
  parent, carrying a ``Previous``: the record's validators (ETag, Last-Modified), its
  content hash and the record itself. The seeds are claimed in the seen set (under a
  claimer of their own, apart from the start URLs), so neither a start URL nor a link found
  later to one of them is crawled twice.
- **Asking** (``conditional``, from worker/stages.py's Plan): a task with a previous record
  goes out with If-None-Match / If-Modified-Since (http engine; a browser navigation is not
  conditional, its page is compared by hash instead).
- **Judging** (``compare``, from worker/process.py, after the fetch and before the nodes):
  a 304, or a 200 whose HTML hashes as before, is ``unchanged``: the nodes do not run, no
  link is emitted, and the record repeats the previous one's data. Any other page is
  ``changed`` (nodes run) or, with no previous record, ``new``.

A previous record's data travels inside its task, so it is bounded: past
``MAX_CARRIED_DATA_BYTES`` of JSON the seed carries its validators and hash without the
data, its request is not conditional, and an unchanged page is extracted again (still
marked ``unchanged``). That keeps a task far below a Pub/Sub message's 10 MB; the seeds of
one recrawl are at most the execution's ``max_pages``, like any task.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import msgspec

from backends.blobs import BlobNotFound, BlobStore
from backends.errors import InvalidInputError, PermanentError
from backends.fetcher import FetchRequest
from backends.state import TERMINAL_STATUSES, ExecutionStore
from backends.task import Previous
from nodes.page import Page
from worker.context import ExecutionContext
from worker.export.manifest import Manifest
from worker.export_read import ExportAt, open_export, record_lines
from worker.frontier import Frontier
from worker.records import RECORD_DECODER, Change, Record
from workflows.rules import Admit
from workflows.urls import BadUrl

# A previous record's data is carried in its task up to this many bytes of JSON: tasks stay
# small in the queue, the task ledger and a Pub/Sub message (10 MB at most). Larger data is
# extracted again instead.
MAX_CARRIED_DATA_BYTES: Final = 256 * 1024
# Seeds are published this many at a time while the previous export streams in.
SEED_BATCH: Final = 500
# The params key of an execution that recrawls another (the previous one's id); its report
# (worker/report.py) reads it there.
PARAM: Final = "recrawl_of"

_encoder = msgspec.json.Encoder()


class RecrawlRefused(InvalidInputError):
    """The previous execution cannot be recrawled. ``conflict``: not yet (it has not ended,
    or its export is not written), as opposed to never (no such execution, another
    workflow's)."""

    error_class = "recrawl"

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True, slots=True)
class RecrawlSource:
    """Where the previous execution's export is: its blob store (the deployment's bucket, or
    a ``trawl run`` output directory) and its id."""

    blobs: BlobStore
    execution_id: str


# -- before the start: is the previous execution one to recrawl?


async def check_previous(
    state: ExecutionStore, blobs: BlobStore, execution_id: str, *, tenant: str, workflow: str
) -> None:
    """RecrawlRefused unless ``execution_id`` is an execution of ``tenant``'s ``workflow``
    that has ended and has its export written."""
    previous = await state.get_execution(execution_id)
    if previous is None or previous.tenant != tenant:
        raise RecrawlRefused(f"no execution {execution_id!r}")
    if previous.workflow != workflow:
        raise RecrawlRefused(
            f"execution {execution_id} ran workflow {previous.workflow!r}, not "
            f"{workflow!r}; a recrawl goes over an execution of the same workflow"
        )
    if previous.status not in TERMINAL_STATUSES:
        raise RecrawlRefused(
            f"execution {execution_id} is {previous.status}; only one that has "
            "ended (completed, failed or cancelled) can be recrawled",
            conflict=True,
        )
    await previous_export(RecrawlSource(blobs, execution_id), workflow=workflow)


async def previous_export(source: RecrawlSource, *, workflow: str) -> ExportAt:
    """The previous execution's export, if it is one of ``workflow`` (RecrawlRefused if it
    is missing, unreadable or another workflow's)."""
    name = source.execution_id
    try:
        export = await open_export(source.blobs, name)
    except BlobNotFound:
        raise RecrawlRefused(
            f"execution {name} has no export yet (it is written when the "
            "execution ends; a cancelled one's once its workers let go)",
            conflict=True,
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecrawlRefused(f"the export of {name} is unreadable: {exc}") from None
    _check_manifest(export.manifest, workflow)
    return export


def _check_manifest(manifest: Manifest, workflow: str) -> None:
    if manifest.workflow.name != workflow:
        raise RecrawlRefused(
            f"execution {manifest.execution_id} ran workflow "
            f"{manifest.workflow.name!r}, not {workflow!r}; a recrawl goes over an execution "
            "of the same workflow"
        )


# -- seeding


async def seed(ctx: ExecutionContext, frontier: Frontier, source: RecrawlSource) -> int:
    """Publish each record of the previous export that the workflow would still crawl (its
    phase still writes records, in scope, not too deep) as a task carrying its
    ``Previous``; how many were published. ``max_pages`` bounds them as it bounds links."""
    export = await previous_export(source, workflow=ctx.workflow.name)
    published = 0
    batch: list[tuple[Admit, Previous]] = []
    async for admit, previous in _seeds(ctx, export):
        batch.append((admit, previous))
        if len(batch) >= SEED_BATCH:
            published += await _publish(ctx, frontier, batch)
            batch = []
    if batch:
        published += await _publish(ctx, frontier, batch)
    return published


async def _seeds(ctx: ExecutionContext, export: ExportAt) -> AsyncIterator[tuple[Admit, Previous]]:
    name = export.manifest.execution_id
    async for line in record_lines(export):
        try:
            record = RECORD_DECODER.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RecrawlRefused(f"a record of {name} is unreadable: {exc}") from None
        admit = _admit(ctx, record)
        if admit is not None:
            yield admit, previous_of(record)


def _admit(ctx: ExecutionContext, record: Record) -> Admit | None:
    """The record's URL as a task of the recrawl, or None when the workflow (as it is now)
    would no longer crawl it there."""
    if record.phase not in ctx.record_phases or record.depth > ctx.workflow.max_depth:
        return None
    try:
        url = ctx.rules.canonical(record.url)
    except BadUrl:
        return None
    if not ctx.rules.in_scope(url):
        return None
    return Admit(url, record.phase, record.depth, record.marker)


def previous_of(record: Record) -> Previous:
    """What a seed carries of ``record``: its data only while it is small enough."""
    carried = len(_encoder.encode(record.data)) <= MAX_CARRIED_DATA_BYTES
    return Previous(
        etag=record.etag,
        last_modified=record.last_modified,
        content_hash=record.content_hash,
        status=record.status,
        content_type=record.content_type,
        parent_url=record.parent_url,
        lastmod=record.lastmod,
        data=record.data if carried else None,
    )


async def _publish(
    ctx: ExecutionContext, frontier: Frontier, batch: list[tuple[Admit, Previous]]
) -> int:
    previous = {(admit.url, admit.phase): prev for admit, prev in batch}
    admits = [admit for admit, _ in batch]
    return len(await frontier.publish(ctx, admits, previous=previous))


# -- asking and judging


def conditional(request: FetchRequest, previous: Previous | None, engine: str) -> FetchRequest:
    """``request`` made conditional on the previous record's validators: http engine only,
    and only when the previous data can be repeated (a 304 has no body to extract)."""
    if previous is None or previous.data is None or engine != "http":
        return request
    headers: dict[str, str] = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    if not headers:
        return request
    return dataclasses.replace(request, headers={**request.headers, **headers})


def content_hash(html: str) -> str:
    """SHA-256 (hex) of the page's HTML as the nodes read it, UTF-8 encoded: the decoded
    response body (http) or the rendered DOM (browser)."""
    return hashlib.sha256(html.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Comparison:
    """A fetched page against its previous record: the change, the page's content hash, and
    the previous record to repeat instead of running the nodes (None: run them)."""

    change: Change
    content_hash: str | None
    repeat: Previous | None = None


def compare(previous: Previous | None, page: Page, *, hashed: bool = True) -> Comparison:
    """Judge ``page`` against ``previous`` (module docstring). ``hashed``: the page needs
    its content hash (its phase writes records) even when there is nothing to compare."""
    if page.status == 304:
        if previous is None or previous.data is None:
            # Only a request the workflow's own headers made conditional gets here.
            raise PermanentError(
                f"HTTP 304 from {page.url}: the request was conditional but this execution "
                "has no previous record of the page to repeat",
                error_class="http_304",
            )
        return Comparison("unchanged", previous.content_hash, previous)
    if previous is None:
        return Comparison("new", content_hash(page.html) if hashed else None)
    digest = content_hash(page.html)
    if digest != previous.content_hash:
        return Comparison("changed", digest)
    return Comparison("unchanged", digest, previous if previous.data is not None else None)
