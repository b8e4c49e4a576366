"""Starting an execution: create it, move it to running, publish its start URLs.

The one way an execution starts, whoever starts it: ``trawl run`` (over the stages it is
about to run), ``trawl submit`` and the orchestrator's ``POST /v1/workflows/{name}/executions``
(over the deployment's ports), so every shape publishes exactly the same first tasks.
``publish_start_urls`` is also what a resumed ``trawl run`` goes on with. A recrawl
publishes the previous execution's records as seeds first (worker/recrawl.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Container

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.state import Execution, StateStore
from backends.task import Task, seed_key
from worker.assemble import Assembly, Ports
from worker.completion import Completion
from worker.context import ExecutionContext
from worker.frontier import Frontier
from worker.recrawl import PARAM as RECRAWL_PARAM
from worker.recrawl import RecrawlSource, previous_export, seed
from worker.secrets import load_secrets
from worker.sitemaps import start_seeds
from worker.telemetry import Telemetry
from workflows.rules import Admit
from workflows.spec import Workflow


class ActiveCapReached(Exception):
    """The tenant already has its cap of pending or running executions."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"{cap} executions are already running for this tenant")
        self.cap = cap


async def store_workflow(
    state: StateStore, tenant: str, workflow: Workflow, source_text: str = ""
) -> int:
    """Store ``workflow`` (and the text it was read from) as a new version; its number."""
    spec_json = msgspec.json.encode(workflow).decode()
    return await state.put_workflow(tenant, workflow.name, source_text, spec_json)


async def start_execution(
    ports: Ports,
    workflow: Workflow,
    *,
    tenant: str,
    version: int,
    params: dict[str, object] | None = None,
    max_active: int | None = None,
    clock: Clock | None = None,
    queue_window: int = 0,
    execution_id: str | None = None,
    stages: Assembly | None = None,
    telemetry: Telemetry | None = None,
    recrawl: RecrawlSource | None = None,
) -> Execution:
    """Run ``workflow`` (stored as ``version``, with ``params['set']`` already applied) as a
    new execution, named ``execution_id`` (default: a fresh one); the running execution.
    One whose start URLs are all out of scope completes at once.

    With ``queue_window`` > 0 at most that many of its tasks are in the queue at once (fair
    sharing; see StateStore.register_tasks). With ``max_active``, ActiveCapReached (and
    nothing created) when the tenant already has that many pending or running executions,
    checked atomically with the creation. SecretsMissing (and nothing created) when the
    workflow names a secret ``tenant`` does not have. With ``stages`` (assembled over
    ``ports`` by the process about to run them) the start URLs go through their frontier,
    their completion announces an execution that completes at once, and their cache holds
    its context.

    With ``recrawl`` (worker/recrawl.py) the execution goes over a previous one's pages:
    RecrawlRefused (and nothing created) unless that one's export is of this workflow; its
    id goes into the params as ``recrawl_of``, and its records are published as seeds
    before the start URLs, while the execution is still pending, so that it cannot complete
    before every seed is registered. If seeding fails the execution is failed."""
    clock = clock or SystemClock()
    # Every secret the workflow names must exist: SecretsMissing, and nothing created.
    secrets = await load_secrets(ports.state, tenant, workflow)
    extra: dict[str, object] = {"queue_window": queue_window} if queue_window > 0 else {}
    if recrawl is not None:
        await previous_export(recrawl, workflow=workflow.name)
        extra[RECRAWL_PARAM] = recrawl.execution_id
    execution = Execution(
        id=execution_id or uuid.uuid4().hex,
        workflow=workflow.name,
        workflow_version=version,
        tenant=tenant,
        status="pending",
        created_at=clock.wall(),
        params={**(params or {}), **extra},
    )
    if max_active is None:
        await ports.state.create_execution(execution)
    elif not await ports.state.create_execution_capped(execution, max_active):
        raise ActiveCapReached(max_active)
    if stages is None:
        frontier = Frontier(ports.seen, ports.state, ports.queue, clock)
        completion = Completion(ports.state, ports.blobs, clock)
    else:
        frontier, completion = stages.frontier, stages.completion
    if recrawl is not None:
        await _seed(ports, ExecutionContext.build(execution, workflow), frontier, recrawl)
    if not await ports.state.transition(execution.id, "running", from_statuses={"pending"}):
        raise InvalidInputError(f"execution {execution.id} could not be started")
    running = await ports.state.get_execution(execution.id)
    assert running is not None
    ctx = ExecutionContext.build(running, workflow)
    ctx.secrets = secrets
    if stages is not None:
        stages.contexts.put(ctx)
    await publish_start_urls(ctx, frontier, completion, telemetry=telemetry)
    return running


async def _seed(
    ports: Ports, ctx: ExecutionContext, frontier: Frontier, source: RecrawlSource
) -> None:
    """Publish a recrawl's seeds; on failure the pending execution is failed, saying why."""
    try:
        await seed(ctx, frontier, source)
    except Exception as exc:
        await ports.state.transition(
            ctx.execution.id,
            "failed",
            from_statuses={"pending"},
            error=f"recrawl of {source.execution_id}: {exc}",
        )
        raise


async def publish_start_urls(
    ctx: ExecutionContext,
    frontier: Frontier,
    completion: Completion,
    *,
    skip: Container[str] = frozenset(),
    telemetry: Telemetry | None = None,
) -> list[Task]:
    """Publish the start URLs of ``ctx``'s workflow that its scope admits, and its sitemaps
    (and robots.txt files to read sitemaps from), but for the task keys in ``skip`` (those
    a resumed run already queued or finished); the tasks published. When none is, the
    execution is asked whether it is complete: one with nothing to crawl (every start URL
    out of scope, nothing left of a resumed run) completes at once, its export holding
    what there is."""
    workflow = ctx.workflow
    starts = [
        d
        for d in map(ctx.rules.start, workflow.start_urls)
        if isinstance(d, Admit) and d.url not in skip
    ]
    telemetry = telemetry or Telemetry.create()
    with telemetry.execution_span(ctx.execution.id, workflow.name):
        published = await frontier.publish(ctx, starts) if starts else []
        for kind, seeds in start_seeds(workflow):  # sitemaps, robots.txt (worker/sitemaps.py)
            fresh = [a for a in seeds if seed_key(kind, a.url) not in skip]
            published += await frontier.publish(ctx, fresh, kind=kind) if fresh else []
    if not published:
        await completion.check(ctx.execution.id)
    return published
