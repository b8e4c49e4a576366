"""One task, from delivery to outcome, as named stages: robots.txt, politeness, fetch,
nodes, frontier, record (worker/stages.py has the data they hand each other).

Telemetry wraps the stages from here, a span per stage; the stages themselves neither
measure nor catch. Every error ends in exactly one of four ways, looked up in the table of
worker/endings.py: a hand-back (untried), a retry (nack with backoff), a failure recorded
with its class, or a filtered task. Nothing is lost: an unexpected exception in a node is a
recorded failure naming the exception, not a crash.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.trace import Span, StatusCode

from backends.clock import Clock
from backends.errors import PermanentError
from backends.fetcher import Fetcher
from backends.queue import Delivery
from backends.ratelimit import RateLimiter, RatePolicy
from backends.state import TaskResult
from backends.task import Task
from nodes.chain import run_chain
from nodes.page import Page
from worker.autoscale import Concurrency
from worker.context import ExecutionCache
from worker.endings import Filtered, HandBack, ending_of
from worker.frontier import Frontier
from worker.politeness import NO_PERMIT, Permit, Politeness, Wait
from worker.proxies import ProxyRouter
from worker.records import Record
from worker.recrawl import compare
from worker.retry import backoff_delay
from worker.robots import RobotsCache
from worker.secrets import redact
from worker.session import Sessions
from worker.sitemaps import SitemapReader, seed_plan
from worker.stages import Extraction, Plan, build_record, succeeded, task_result
from worker.telemetry import EXECUTION_ID, Telemetry
from workflows.redact import redact_text
from workflows.spec import NodeSpec, Retries

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
# Executions whose tasks are no longer crawled.
_ENDED = ("cancelled", "completed", "failed")


@dataclass(slots=True)
class Outcome:
    """A finished task on its way to the sink: what to count, what to write, what to ack."""

    delivery: Delivery
    result: TaskResult
    record: Record | None = None


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
        gates: Concurrency | None = None,
    ) -> None:
        self._t = telemetry or Telemetry.create()
        # Each engine's pages at once (worker/autoscale.py); None: as many as the pipeline.
        self._gates = gates
        self._contexts = contexts
        self._fetchers = fetchers
        self._politeness = Politeness(
            limiter, clock, max_inline_wait_s=max_inline_wait_s, host_policy=host_policy
        )
        self._robots = robots
        self._frontier = frontier
        self._sitemaps = SitemapReader(frontier, fetchers)
        self._sessions = Sessions(contexts.state, fetchers, clock)  # logins (worker/session.py)
        self._clock = clock
        self._proxies = ProxyRouter(
            clock=clock, http=fetchers.get("http"), on_outcome=self._t.count_proxy
        )
        # Deliveries of a task this process handed back untried (politeness, stopping), by
        # (execution, task key). The queue's delivery_attempt counts every delivery; these are
        # not attempts at the page, so they must not use up its retries.
        self._handbacks: dict[tuple[str, str], int] = {}

    def stop_waiting(self) -> None:
        """The worker is stopping: tasks waiting for a politeness permit are handed back to
        the queue at once instead of waiting on (they have not started); so are those
        waiting for a place of their engine."""
        self._politeness.stop_waiting()
        if self._gates is not None:
            self._gates.stop_waiting()

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
            self._handbacks.pop((task.execution_id, task.ledger_key), None)
        return outcome

    async def _process(self, delivery: Delivery) -> Outcome | None:
        try:
            ctx = await self._contexts.get(delivery.task.execution_id)
        except PermanentError as exc:  # the execution or its workflow is gone
            return await self._end(delivery, exc, None)
        if ctx.execution.status in _ENDED:
            return await self._end(delivery, Filtered("cancelled"), None)
        try:
            task = delivery.task
            await self._sessions.ensure(ctx)  # a workflow with a login: its session first
            if task.kind != "page":  # a sitemap, or a robots.txt read for its sitemaps
                return await self._seed(seed_plan(ctx, task), delivery)
            return await self._run(Plan.of(ctx, task), delivery)
        except Exception as exc:
            return await self._end(delivery, exc, ctx.workflow.retries, ctx.sensitive_values())

    # -- the stages, in order

    async def _run(self, plan: Plan, delivery: Delivery) -> Outcome:
        """Every stage of one task; one that ends it early raises (worker/endings.py)."""
        task = plan.task
        if plan.ctx.workflow.politeness.respect_robots_txt:
            plan = await self._robots_stage(plan)
        # Before the permit: with every proxy resting the task goes back untried.
        plan = plan.through(await self._proxies.route(plan.ctx, task.url))
        # A cache hit sends no request to the host: no permit.
        cached = await self._fetchers[plan.engine].stored(plan.request)
        async with NO_PERMIT if cached else await self._permit(task, plan.policy):
            if self._gates is None:
                page = await self._fetch_and_nodes(plan)
            else:  # after the permit: a page waiting for its host holds no engine slot
                async with self._gates.gate(plan.engine).held():
                    page = await self._fetch_and_nodes(plan)
        with self._t.stage("frontier", links=len(page.links)):
            funnel = await self._frontier.admit(plan.ctx, task, page.links)
        record = build_record(plan, page)
        return Outcome(delivery, succeeded(delivery, page, funnel, record), record)

    async def _seed(self, plan: Plan, delivery: Delivery) -> Outcome:
        """A task that is not a page (worker/sitemaps.py): robots.txt, proxies and
        politeness as for a page, then the sitemap is read instead of the nodes, or the
        robots.txt's Sitemap: lines are taken. No record."""
        task, ctx = plan.task, plan.ctx
        if task.kind == "robots_sitemaps":
            fetching = self._robots.needs_fetch(task.url)
            async with await self._permit(task, ctx.policy) if fetching else NO_PERMIT:
                with self._t.stage("robots"):
                    lines = await self._robots.sitemaps(task.url, ctx.workflow.fetch.user_agent)
            with self._t.stage("frontier", links=len(lines)):
                read = await self._sitemaps.from_robots(ctx, task, lines)
        else:
            if ctx.workflow.politeness.respect_robots_txt:
                plan = await self._robots_stage(plan)
            plan = plan.through(await self._proxies.route(ctx, task.url))
            async with await self._permit(task, plan.policy):
                with self._t.stage("fetch", engine=plan.engine):
                    document = await self._sitemaps.fetch(plan)
            with self._t.stage("sitemap"):
                read = await self._sitemaps.read(plan, document)
        result = task_result(
            delivery, "succeeded", warnings=dict(read.warnings), funnel=dict(read.funnel)
        )
        return Outcome(delivery, result)

    async def _permit(self, task: Task, policy: RatePolicy) -> Permit:
        """Leave to send one request to ``task``'s host under ``policy``; HandBack when it
        is not due soon (the task goes back to the queue untried)."""
        with self._t.stage("politeness"):
            permit = await self._politeness.acquire(task.execution_id, task.url, policy)
        if isinstance(permit, Wait):
            raise HandBack(permit.retry_after_s)
        return permit

    async def _robots_stage(self, plan: Plan) -> Plan:
        """Ask robots.txt once; the plan slowed to its Crawl-delay. Fetching it is a request
        to the host like any other: it waits for the same permits."""
        task, workflow = plan.task, plan.ctx.workflow
        fetching = self._robots.needs_fetch(task.url)
        async with await self._permit(task, plan.ctx.policy) if fetching else NO_PERMIT:
            with self._t.stage("robots"):
                verdict = await self._robots.verdict(task.url, workflow.fetch.user_agent)
        if not verdict.allowed:
            raise Filtered("robots_txt")
        return plan.slowed_to(verdict.slowed(plan.policy))

    async def _fetch_and_nodes(self, plan: Plan) -> Extraction:
        """Fetch the page and run the phase's nodes over it while it is open."""
        fetched_at = self._clock.wall()
        async with contextlib.AsyncExitStack() as stack:
            with self._t.stage("fetch", engine=plan.engine) as fetch_span:
                opening = self._fetchers[plan.engine].open(plan.request)
                if plan.route is None:
                    page = await stack.enter_async_context(opening)
                else:  # judged for bans on the way (worker/proxies.py)
                    fetch_span.set_attribute("trawl.proxy", plan.route.name)
                    page = await plan.route.open(stack, opening, plan.task.url)
                fetch_span.set_attribute("http.response.status_code", page.status)
            self._observe_fetch(page, plan.engine)
            await self._sessions.judge(plan, page)  # led to the login page: log in again
            hashed = plan.task.phase in plan.ctx.record_phases
            compared = compare(plan.task.previous, page, hashed=hashed)
            if compared.repeat is not None:  # a recrawl found it unchanged: no nodes
                return Extraction.repeated(page, fetched_at, compared, compared.repeat)
            with self._t.stage("nodes"):
                around = self._node_span if self._t.tracing else None
                nodes = await run_chain(plan.phase.nodes, page, plan.task.depth, around=around)
            return Extraction.of(page, fetched_at, nodes, compared)

    # -- how a task ends

    async def _end(
        self,
        delivery: Delivery,
        exc: Exception,
        retries: Retries | None,
        secrets: Sequence[str] = (),
    ) -> Outcome | None:
        """Settle a task that raised ``exc`` as the table in worker/endings.py says; None
        when it went back to the queue. ``retries``: None where no retry can apply;
        ``secrets``: values its failure message must not show (the execution's secrets
        and session cookies)."""
        task = delivery.task
        ending = ending_of(exc)
        if ending.kind == "filtered":
            return Outcome(delivery, task_result(delivery, "filtered", ending.error_class))
        handbacks = self._handbacks.get((task.execution_id, task.ledger_key), 0)
        if ending.kind == "hand_back":
            delay_s = ending.delay_s
            if delay_s is None:  # Trawl's own backend, not the page: later each time
                log.warning("%s; handing the task back", exc)
                delay_s = min(BACKEND_HANDBACK_MAX_S, 2.0**handbacks)
            await self._hand_back(delivery, delay_s)
            return None
        attempt = delivery.delivery_attempt - handbacks  # attempts at the page itself
        if ending.kind == "retry" and retries is not None and attempt < retries.max_attempts:
            await delivery.nack(backoff_delay(attempt, retries.backoff_s, ending.delay_s))
            return None
        if ending.unexpected:
            log.error("task %s failed unexpectedly", task.url, exc_info=exc)
        # The message goes to the failures table, failures.jsonl and the API: URLs in it
        # lose their credentials and tokens (the task's own URL is kept as it is: it is
        # what a replay fetches).
        message = redact(redact_text(ending.message or ""), secrets)
        result = task_result(
            delivery, "failed", ending.error_class, message, attempt=max(1, attempt)
        )
        return Outcome(delivery, result)

    async def _hand_back(self, delivery: Delivery, delay_s: float) -> None:
        """Give an untried delivery back to the queue; its next one is not a retry."""
        key = (delivery.task.execution_id, delivery.task.ledger_key)
        if key not in self._handbacks and len(self._handbacks) >= MAX_REMEMBERED_HANDBACKS:
            del self._handbacks[next(iter(self._handbacks))]
        self._handbacks[key] = self._handbacks.get(key, 0) + 1
        await delivery.nack(delay_s)

    # -- telemetry around the stages

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
        if result.error_class:  # a bounded set (worker/endings.py): the dashboards group by it
            attributes["error.type"] = result.error_class
        self._t.pages.add(1, attributes)
        if result.records:
            self._t.records.add(result.records, {"trawl.phase": result.phase})
        self._t.count_funnel(result.funnel)

    def _node_span(self, index: int, node: NodeSpec) -> contextlib.AbstractContextManager[Span]:
        kind = node.__struct_config__.tag
        return self._t.stage(f"node {kind}", **{"trawl.node.index": index})

    def _observe_fetch(self, page: Page, engine: str) -> None:
        if not self._t.measuring:
            return
        attributes = {"trawl.engine": engine}
        self._t.fetched_bytes.add(len(page.html.encode("utf-8", "replace")), attributes)
        self._t.fetch_duration.record(page.elapsed_s, attributes)
