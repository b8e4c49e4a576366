"""One task, from delivery to outcome: politeness, fetch, node chain, frontier.

Every error ends in exactly one of three places, decided here and nowhere else: a retry
(nack with backoff), a failure recorded with its class, or a filtered task. Nothing is lost:
an unexpected exception in a node is a recorded failure naming the exception, not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import msgspec
from opentelemetry.trace import Span, StatusCode

from backends.clock import Clock
from backends.errors import PermanentError, RetryableError
from backends.fetcher import Fetcher
from backends.queue import Delivery
from backends.ratelimit import Grant, RateLimiter, RatePolicy
from backends.state import TaskResult, funnel_key
from nodes.chain import run_chain
from nodes.context import NodeContext
from nodes.page import Page
from nodes.script import ScriptEngineError, ScriptTimeout
from worker.context import ExecutionCache, ExecutionContext
from worker.frontier import Frontier
from worker.outage import backend_of
from worker.retry import backoff_delay
from worker.robots import RobotsCache
from worker.telemetry import EXECUTION_ID, Telemetry
from workflows.redact import redact_text
from workflows.spec import NodeSpec
from workflows.urls import host_key

log = logging.getLogger(__name__)

# Waiting for a rate-limit permit in place is cheaper than a redelivery round trip, up to a
# point: beyond this the task is handed back to the queue so the slot can serve other hosts.
MAX_INLINE_WAIT_S = 5.0
# Hand-backs remembered per task (see TaskProcessor._handbacks); the oldest are forgotten
# beyond this, which only makes their later retries count as used up a little early.
MAX_REMEMBERED_HANDBACKS = 100_000
# A task whose own backends failed goes back to the queue after 1, 2, 4... seconds, at most
# this long (its page retries are not touched: the page did not fail).
BACKEND_HANDBACK_MAX_S = 30.0


@dataclass(slots=True)
class Outcome:
    """A finished task on its way to the sink: what to count, what to write, what to ack."""

    delivery: Delivery
    result: TaskResult
    record: dict[str, Any] | None = None


class TaskProcessor:
    def __init__(
        self,
        *,
        contexts: ExecutionCache,
        fetchers: Mapping[str, Fetcher],
        limiter: RateLimiter,
        robots: RobotsCache,
        frontier: Frontier,
        clock: Clock,
        max_inline_wait_s: float = MAX_INLINE_WAIT_S,
        telemetry: Telemetry | None = None,
        host_policy: RatePolicy | None = None,
    ) -> None:
        self._max_inline_wait_s = max_inline_wait_s
        # The operator's ceiling per host across every execution and tenant (None: only
        # each execution's own politeness applies, as in `trawl run`).
        self._host_policy = host_policy
        self._t = telemetry or Telemetry.create()
        self._contexts = contexts
        self._fetchers = fetchers
        self._limiter = limiter
        self._robots = robots
        self._frontier = frontier
        self._clock = clock
        self._stopping = asyncio.Event()
        # Deliveries of a task this process handed back untried (politeness, stopping), by
        # (execution, url). The queue's delivery_attempt counts every delivery; these are
        # not attempts at the page, so they must not use up its retries.
        self._handbacks: dict[tuple[str, str], int] = {}

    def stop_waiting(self) -> None:
        """The worker is stopping: tasks waiting for a politeness permit are handed back to
        the queue at once instead of waiting on (they have not started)."""
        self._stopping.set()

    async def process(self, delivery: Delivery) -> Outcome | None:
        """Run one delivery; None when it was handed back to the queue for later."""
        task = delivery.task
        token = EXECUTION_ID.set(task.execution_id)
        try:
            with self._t.task_span(task) as span:
                self._t.observe_lag(task, self._clock.wall().timestamp())
                outcome = await self._process(delivery)
                self._observe(span, outcome)
        finally:
            EXECUTION_ID.reset(token)
        if outcome is not None:  # settled for good
            self._handbacks.pop((task.execution_id, task.url), None)
        return outcome

    def _observe(self, span: Span, outcome: Outcome | None) -> None:
        if not span.is_recording() and not self._t.measuring:
            return
        if outcome is None:
            span.set_attribute("trawl.outcome", "handed_back")
            return
        result = outcome.result
        span.set_attribute("trawl.outcome", result.outcome)
        if result.error_class:
            span.set_attribute("error.type", result.error_class)
        if result.outcome == "failed":
            span.set_status(StatusCode.ERROR, result.error_message or result.error_class or "")
        if not self._t.measuring:
            return
        attributes = {"trawl.outcome": result.outcome, "trawl.phase": result.phase}
        self._t.pages.add(1, attributes)
        if result.records:
            self._t.records.add(result.records, {"trawl.phase": result.phase})
        self._t.count_funnel(result.funnel)

    async def _process(self, delivery: Delivery) -> Outcome | None:
        task = delivery.task
        try:
            ctx = await self._contexts.get(task.execution_id)
        except PermanentError as exc:
            return self._failed(delivery, exc.error_class, str(exc))
        if ctx.execution.status in ("cancelled", "completed", "failed"):
            return self._filtered(delivery, "cancelled")
        workflow = ctx.workflow
        if workflow.politeness.respect_robots_txt:
            held: list[tuple[str, Grant]] = []
            if self._robots.needs_fetch(task.url):
                # Fetching robots.txt is a request to the host like any other: it waits
                # for the same permits (or the task goes back to the queue).
                key = f"{task.execution_id}|{host_key(task.url)}"
                try:
                    with self._t.stage("politeness"):
                        permits = await self._permits(
                            task.url, key, ctx.policy, self._max_inline_wait_s
                        )
                except RetryableError as exc:  # the rate limiter's own backend
                    await self._backend_down(delivery, exc)
                    return None
                if isinstance(permits, float):
                    await self._hand_back(delivery, permits)
                    return None
                held = permits
            try:
                with self._t.stage("robots"):
                    allowed = await self._robots.allowed(task.url, workflow.fetch.user_agent)
            except Exception as exc:  # a robots.txt we cannot read never blocks the crawl
                log.warning("robots.txt check failed for %s: %s", task.url, exc)
                allowed = True
            finally:
                await self._release(held)
            if not allowed:
                return self._filtered(delivery, "robots_txt")
        try:
            return await self._fetch_and_run(delivery, ctx)
        except RetryableError as exc:
            if backend_of(exc) != "backend":
                await self._backend_down(delivery, exc)
                return None
            handbacks = self._handbacks.get((task.execution_id, task.url), 0)
            attempt = delivery.delivery_attempt - handbacks
            if attempt < workflow.retries.max_attempts:
                delay = backoff_delay(attempt, workflow.retries.backoff_s, exc.delay_s)
                await delivery.nack(delay)
                return None
            return self._failed(delivery, exc.error_class, str(exc))
        except PermanentError as exc:
            return self._failed(delivery, exc.error_class, str(exc))
        except ScriptEngineError as exc:
            return self._failed(delivery, "script_engine", str(exc))
        except ScriptTimeout as exc:  # the engine discarded the spinning tab
            return self._failed(delivery, exc.error_class, str(exc))
        except ValueError as exc:  # a selector or pattern the page's parser cannot evaluate
            return self._failed(delivery, "node_error", str(exc)[:500])
        except Exception as exc:  # a hostile page or a bug: record it, keep crawling
            log.exception("task %s failed unexpectedly", task.url)
            return self._failed(delivery, f"internal_{type(exc).__name__}", str(exc)[:500])

    async def _fetch_and_run(self, delivery: Delivery, ctx: ExecutionContext) -> Outcome | None:
        task = delivery.task
        phase = ctx.phases[task.phase]
        engine = ctx.workflow.engine_of(phase)
        key = f"{task.execution_id}|{host_key(task.url)}"
        policy = ctx.policy
        if ctx.workflow.politeness.respect_robots_txt:
            crawl_delay = await self._robots.crawl_delay(task.url, ctx.workflow.fetch.user_agent)
            if crawl_delay and crawl_delay > policy.min_interval_s:
                policy = msgspec.structs.replace(policy, min_interval_s=crawl_delay)
        with self._t.stage("politeness"):
            permits = await self._permits(task.url, key, policy, self._max_inline_wait_s)
        if isinstance(permits, float):
            await self._hand_back(delivery, permits)
            return None
        fetched_at = self._clock.wall()
        try:
            async with contextlib.AsyncExitStack() as stack:
                with self._t.stage("fetch", engine=engine) as fetch_span:
                    page = await stack.enter_async_context(
                        self._fetchers[engine].open(ctx.request(task.url))
                    )
                    fetch_span.set_attribute("http.response.status_code", page.status)
                self._observe_fetch(page, engine)
                with self._t.stage("nodes"):
                    around = self._node_span if self._t.tracing else None
                    node_ctx: NodeContext = await run_chain(
                        phase.nodes, page, task.depth, around=around
                    )
                status = page.status
        finally:
            await self._release(permits)
        with self._t.stage("frontier", links=len(node_ctx.links)):
            funnel = await self._frontier.admit(ctx, task, node_ctx.links)
        funnel[funnel_key("fetched", task.phase, task.marker)] += 1
        record = None
        if task.phase in ctx.record_phases:
            record = {
                "execution_id": task.execution_id,
                "workflow": ctx.workflow.name,
                "phase": task.phase,
                "url": task.url,
                "marker": task.marker,
                "depth": task.depth,
                "status": status,
                "fetched_at": fetched_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "data": node_ctx.data,
            }
            funnel[funnel_key("extracted", task.phase, task.marker)] += 1
        result = _result(
            delivery,
            "succeeded",
            records=1 if record is not None else 0,
            warnings=dict(node_ctx.warnings),
            funnel=dict(funnel),
            warning_fields=dict(node_ctx.warning_fields),
        )
        return Outcome(delivery, result, record)

    async def _permits(
        self, url: str, key: str, policy: RatePolicy, max_wait_s: float
    ) -> list[tuple[str, Grant]] | float:
        """Permits to send one request to ``url``'s host: this execution's politeness and,
        when the deployment sets one, its ceiling for the host across every execution.
        Waits in place up to ``max_wait_s`` at a time; beyond that (or when stopping), the
        delay after which to try again, for the task to be handed back."""
        while True:
            grant = await self._limiter.acquire(key, policy)
            taken = [(key, grant)]
            if grant.granted and self._host_policy is not None:
                shared = f"host|{host_key(url)}"
                host_grant = await self._limiter.acquire(shared, self._host_policy)
                if host_grant.granted:
                    taken.append((shared, host_grant))
                else:  # the host is at the deployment's ceiling: give this one back
                    await self._limiter.release(key, grant.lease_id)
                    grant = host_grant
            if grant.granted:
                return taken
            if self._stopping.is_set():
                return 0.0
            if grant.retry_after_s > max_wait_s:
                return grant.retry_after_s
            await self._pause(grant.retry_after_s)

    async def _release(self, permits: list[tuple[str, Grant]]) -> None:
        """Give permits back. A limiter that cannot be reached is no reason to redo the
        task: an unreleased lease frees itself after its TTL."""
        for key, grant in permits:
            try:
                await self._limiter.release(key, grant.lease_id)
            except RetryableError as exc:
                log.warning("%s; the lease will expire on its own", exc)

    async def _backend_down(self, delivery: Delivery, exc: RetryableError) -> None:
        """Our own backend (Redis, Postgres, Pub/Sub, GCS) is down, not the page: the task
        goes back untried, later each time, and keeps all its retries."""
        task = delivery.task
        handbacks = self._handbacks.get((task.execution_id, task.url), 0)
        log.warning("%s; handing the task back", exc)
        await self._hand_back(delivery, min(BACKEND_HANDBACK_MAX_S, 2.0**handbacks))

    def _node_span(self, index: int, node: NodeSpec) -> contextlib.AbstractContextManager[Span]:
        kind = node.__struct_config__.tag
        return self._t.stage(f"node {kind}", **{"trawl.node.index": index})

    def _observe_fetch(self, page: Page, engine: str) -> None:
        if not self._t.measuring:
            return
        attributes = {"trawl.engine": engine}
        self._t.fetched_bytes.add(len(page.html.encode("utf-8", "replace")), attributes)
        self._t.fetch_duration.record(page.elapsed_s, attributes)

    async def _hand_back(self, delivery: Delivery, delay_s: float) -> None:
        """Give an untried delivery back to the queue; its next one is not a retry."""
        key = (delivery.task.execution_id, delivery.task.url)
        if key not in self._handbacks and len(self._handbacks) >= MAX_REMEMBERED_HANDBACKS:
            del self._handbacks[next(iter(self._handbacks))]
        self._handbacks[key] = self._handbacks.get(key, 0) + 1
        await delivery.nack(delay_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep on the clock, cut short by ``stop_waiting``."""
        if self._stopping.is_set():
            return
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleep, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            stopping.cancel()

    def _failed(self, delivery: Delivery, error_class: str, message: str) -> Outcome:
        # Attempts at the page: deliveries handed back untried (politeness) do not count.
        task = delivery.task
        handbacks = self._handbacks.get((task.execution_id, task.url), 0)
        attempts = max(1, delivery.delivery_attempt - handbacks)
        # The message goes to the failures table, failures.jsonl and the API: URLs in it
        # lose their credentials and tokens (the task's own URL is kept as it is: it is
        # what a replay fetches).
        result = _result(delivery, "failed", error_class, redact_text(message), attempt=attempts)
        return Outcome(delivery, result)

    def _filtered(self, delivery: Delivery, reason: str) -> Outcome:
        return Outcome(delivery, _result(delivery, "filtered", reason, None))


def _result(
    delivery: Delivery,
    outcome: Any,
    error_class: str | None = None,
    message: str | None = None,
    *,
    records: int = 0,
    warnings: dict[str, int] | None = None,
    funnel: dict[str, int] | None = None,
    warning_fields: dict[str, int] | None = None,
    attempt: int | None = None,
) -> TaskResult:
    task = delivery.task
    return TaskResult(
        key=task.url,
        url=task.url,
        phase=task.phase,
        marker=task.marker,
        depth=task.depth,
        attempt=delivery.delivery_attempt if attempt is None else attempt,
        outcome=outcome,
        error_class=error_class,
        error_message=message,
        records=records,
        warnings=warnings or {},
        funnel=funnel or {},
        warning_fields=warning_fields or {},
    )
