"""The frontier: from links a page emitted to tasks published, exactly once per claim key
(the URL; under ``link_claims: every`` the URL and the marker: workflows/claims.py).

Order matters for crash safety: a link is marked seen, registered as published in the
StateStore (so completion cannot be declared while it is outstanding), then published. If
publishing fails the seen marks are undone and the parent task is retried.

A worker may die between marking links seen and publishing them. Links are claimed in the
seen-set under a token of their parent task, so the parent's redelivery is told they are
new again and publishes them; the StateStore hands back those registered but unfinished.
Duplicates this may publish (the earlier attempt got as far as publishing) are harmless: a
key's result counts once and the export keeps one record per key. If Redis loses its data
every key looks new; the StateStore still leaves out the finished ones.

Fair sharing: an execution started with a queue window (``ExecutionContext.queue_window``)
has at most that many tasks in the shared queue at once. Tasks beyond it are registered but
held in the StateStore; after each flush ``release`` publishes as many as finishes made room
for. A million-page crawl thus never buries a ten-page one under its backlog: each running
execution has at most its window ahead of anyone else's tasks.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import RetryableError
from backends.queue import TaskQueue
from backends.seen import SeenSet
from backends.state import TaskLedger, funnel_key
from backends.task import Previous, Task, TaskKind, decode_task, encode_task, seed_key
from nodes.context import Link
from worker.context import ExecutionContext
from worker.telemetry import current_trace
from workflows.claims import DUPLICATE_MARKER, claim_key, claim_links
from workflows.rules import Admit


class Frontier:
    def __init__(
        self, seen: SeenSet, state: TaskLedger, queue: TaskQueue, clock: Clock | None = None
    ) -> None:
        self._seen = seen
        self._state = state
        self._queue = queue
        self._clock = clock or SystemClock()
        # Released tasks whose publish failed, published first by the next ``release``.
        self._unpublished: dict[str, list[Task]] = {}

    @property
    def seen(self) -> SeenSet:
        """The seen set, for admission quotas kept beside the keys (worker/sitemaps.py)."""
        return self._seen

    async def admit(
        self, ctx: ExecutionContext, parent: Task, links: Sequence[Link]
    ) -> Counter[str]:
        """Publish the new links of ``parent``'s page; returns their funnel counts
        (``funnel_key`` -> count: discovered, in scope, duplicate_marker, new), by the phase
        each goes to. The links are judged as ``trawl preview`` shows them (``claim_links``)."""
        funnel: Counter[str] = Counter()
        if not links:
            return funnel
        admits: list[Admit] = []
        for claim in claim_links(ctx.rules, parent.phase, links):
            funnel[funnel_key("discovered", claim.phase, claim.marker)] += 1
            if claim.admit is not None:
                admits.append(claim.admit)
                funnel[funnel_key("in_scope", claim.phase, claim.marker)] += 1
            elif claim.dropped == DUPLICATE_MARKER:  # in scope, lost to another marker
                funnel[funnel_key("in_scope", claim.phase, claim.marker)] += 1
                funnel[funnel_key(DUPLICATE_MARKER, claim.phase, claim.marker)] += 1
        if admits:
            published = await self.publish(ctx, admits, parent=parent)
            for task in published:
                funnel[funnel_key("new", task.phase, task.marker)] += 1
        return funnel

    async def publish(
        self,
        ctx: ExecutionContext,
        admits: Sequence[Admit],
        parent: Task | None = None,
        *,
        previous: Mapping[tuple[str, str], Previous] | None = None,
        kind: TaskKind = "page",
        lastmod: Mapping[str, str] | None = None,
    ) -> list[Task]:
        """Dedupe ``admits`` against the seen-set and max_pages, then publish the rest (or
        hold what does not fit the execution's queue window); returns the tasks published
        or held. ``previous``: a recrawl's seeds, the previous record of each (URL,
        phase) (worker/recrawl.py), which its task carries with the record's parent.
        ``kind``: the tasks are sitemaps or robots.txt files to read (worker/sitemaps.py),
        keyed apart from pages; ``lastmod``: the ``<lastmod>`` of pages a sitemap listed,
        by URL."""
        execution_id = ctx.execution.id
        claims = ctx.workflow.link_claims
        if kind == "page":
            keys = [claim_key(a.url, a.marker, claims) for a in admits]
        else:
            keys = [seed_key(kind, a.url) for a in admits]
        # A recrawl's seeds are claimed apart from the start URLs, so that a start URL the
        # previous execution recorded is not published a second time without its record.
        claimer = RECRAWL_CLAIMER if previous else claim_token(parent.url if parent else "")
        fresh = await self._seen.add_new(execution_id, keys, claimer=claimer)
        candidates = [(a, k) for a, k, is_new in zip(admits, keys, fresh, strict=True) if is_new]
        if not candidates:
            return []
        # The current span (the task's, or the execution's for start URLs) parents theirs.
        trace = current_trace() or (parent.trace if parent is not None else {})
        now = self._clock.wall().timestamp()
        built = [
            Task(
                execution_id=execution_id,
                url=a.url,
                depth=a.depth,
                phase=a.phase,
                marker=a.marker,
                parent=parent.url if parent is not None else None,
                trace=trace,
                published_at=now,
                key=key if key != a.url else None,
                kind=kind,
                lastmod=lastmod.get(a.url) if lastmod else None,
            )
            for a, key in candidates
        ]
        if previous:
            built = [_seeded(t, previous.get((t.url, t.phase))) for t in built]
        registered = await self._state.register_tasks(
            execution_id,
            [t.ledger_key for t in built],
            max_total=ctx.workflow.max_pages,
            payloads=[stored_task(t) for t in built],  # for the reconciler and the window
            window=ctx.queue_window,
        )
        publish, held = set(registered.publish), set(registered.held)
        tasks = [t for t in built if t.ledger_key in publish]
        try:
            if tasks:
                await self._queue.publish(tasks)
        except Exception as exc:
            # These keys were claimed by this parent: undo both so its retry starts clean.
            keys = [t.ledger_key for t in tasks] + registered.held
            await self._state.remove_tasks(execution_id, keys)
            await self._seen.discard(execution_id, keys)
            raise RetryableError(f"publishing {len(tasks)} links failed: {exc}") from exc
        return tasks + [t for t in built if t.ledger_key in held]

    async def release(self, ctx: ExecutionContext) -> int:
        """Publish the held tasks of ``ctx``'s execution that its window has room for now;
        returns how many. Call after finishes were counted. If publishing fails the tasks
        are kept here and published first by the next call (RetryableError); should this
        worker die first, they are registered, unfinished and not held, so the reconciler
        publishes them again once the execution stalls."""
        execution_id = ctx.execution.id
        tasks = self._unpublished.pop(execution_id, None)
        if tasks is None:
            if not ctx.queue_window:
                return 0
            payloads = await self._state.release_tasks(execution_id, window=ctx.queue_window)
            now = self._clock.wall().timestamp()
            tasks = [
                msgspec.structs.replace(decode_task(p.encode()), published_at=now) for p in payloads
            ]
        if not tasks:
            return 0
        try:
            await self._queue.publish(tasks)
        except Exception as exc:
            self._unpublished[execution_id] = tasks
            raise RetryableError(f"publishing {len(tasks)} released tasks failed: {exc}") from exc
        return len(tasks)


def _seeded(task: Task, previous: Previous | None) -> Task:
    """A recrawl's seed: ``task`` with the previous record of its URL and that record's
    parent (and sitemap ``<lastmod>``, which the sitemap read again cannot give a URL
    already seeded)."""
    if previous is None:
        return task
    return msgspec.structs.replace(
        task, previous=previous, parent=previous.parent_url, lastmod=previous.lastmod
    )


def stored_task(task: Task) -> str:
    """What the StateStore keeps of a task to publish it again if the queue loses it (see
    worker/reconcile.py): the task without its trace and timestamp."""
    return encode_task(msgspec.structs.replace(task, trace={}, published_at=0.0)).decode()


# The claimer of a recrawl's seeds (worker/recrawl.py) in the seen set.
RECRAWL_CLAIMER = "recrawl"


def claim_token(parent_url: str) -> str:
    """A short, stable name for the task that claims links (its URL is unique per
    execution); 16 hex characters keep the seen-set small. Start URLs use ``start``."""
    if not parent_url:
        return "start"
    return hashlib.blake2b(parent_url.encode("utf-8"), digest_size=8).hexdigest()
