"""The frontier: from links a page emitted to tasks published, exactly once per URL.

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
from collections.abc import Sequence

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import RetryableError
from backends.queue import TaskQueue
from backends.seen import SeenSet
from backends.state import TaskLedger, funnel_key
from backends.task import Task, decode_task, encode_task
from nodes.context import Link
from worker.context import ExecutionContext
from worker.telemetry import current_trace
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

    async def admit(
        self, ctx: ExecutionContext, parent: Task, links: Sequence[Link]
    ) -> Counter[str]:
        """Publish the new links of ``parent``'s page; returns their funnel counts
        (``funnel_key`` -> count: discovered, in scope, new), by the phase each goes to."""
        funnel: Counter[str] = Counter()
        if not links:
            return funnel
        rules = ctx.rules
        admits: dict[str, Admit] = {}
        for link in links:
            decision = rules.judge(parent.phase, link.url, link.marker, link.depth)
            if isinstance(decision, Admit):
                funnel[funnel_key("discovered", decision.phase, link.marker)] += 1
                if decision.url not in admits:
                    admits[decision.url] = decision
                    funnel[funnel_key("in_scope", decision.phase, link.marker)] += 1
            else:
                target = rules.phase_for(parent.phase, link.marker, link.url, link.depth)
                funnel[funnel_key("discovered", target, link.marker)] += 1
        if admits:
            published = await self.publish(ctx, list(admits.values()), parent=parent)
            for task in published:
                funnel[funnel_key("new", task.phase, task.marker)] += 1
        return funnel

    async def publish(
        self, ctx: ExecutionContext, admits: Sequence[Admit], parent: Task | None = None
    ) -> list[Task]:
        """Dedupe ``admits`` against the seen-set and max_pages, then publish the rest (or
        hold what does not fit the execution's queue window); returns the tasks published
        or held."""
        execution_id = ctx.execution.id
        keys = [a.url for a in admits]
        claimer = claim_token(parent.url if parent is not None else "")
        fresh = await self._seen.add_new(execution_id, keys, claimer=claimer)
        candidates = [a for a, is_new in zip(admits, fresh, strict=True) if is_new]
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
            )
            for a in candidates
        ]
        registered = await self._state.register_tasks(
            execution_id,
            [t.url for t in built],
            max_total=ctx.workflow.max_pages,
            payloads=[stored_task(t) for t in built],  # for the reconciler and the window
            window=ctx.queue_window,
        )
        publish, held = set(registered.publish), set(registered.held)
        tasks = [t for t in built if t.url in publish]
        try:
            if tasks:
                await self._queue.publish(tasks)
        except Exception as exc:
            # These keys were claimed by this parent: undo both so its retry starts clean.
            urls = [t.url for t in tasks] + registered.held
            await self._state.remove_tasks(execution_id, urls)
            await self._seen.discard(execution_id, urls)
            raise RetryableError(f"publishing {len(tasks)} links failed: {exc}") from exc
        return tasks + [t for t in built if t.url in held]

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


def stored_task(task: Task) -> str:
    """What the StateStore keeps of a task to publish it again if the queue loses it (see
    worker/reconcile.py): the task without its trace and timestamp."""
    return encode_task(msgspec.structs.replace(task, trace={}, published_at=0.0)).decode()


def claim_token(parent_url: str) -> str:
    """A short, stable name for the task that claims links (its URL is unique per
    execution); 16 hex characters keep the seen-set small. Start URLs use ``start``."""
    if not parent_url:
        return "start"
    return hashlib.blake2b(parent_url.encode("utf-8"), digest_size=8).hexdigest()
