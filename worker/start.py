"""Starting an execution: create it, move it to running, publish its start URLs.

The one way an execution starts, whoever starts it: ``trawl run`` (over the stages it is
about to run), ``trawl submit`` and the orchestrator's ``POST /v1/workflows/{name}/executions``
(over the deployment's ports), so every shape publishes exactly the same first tasks.
``publish_start_urls`` is also what a resumed ``trawl run`` goes on with.
"""

from __future__ import annotations

import uuid
from collections.abc import Container

import msgspec

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.state import Execution, StateStore
from backends.task import Task
from worker.assemble import Assembly, Ports
from worker.completion import Completion
from worker.context import ExecutionContext
from worker.frontier import Frontier
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
) -> Execution:
    """Run ``workflow`` (stored as ``version``, with ``params['set']`` already applied) as a
    new execution, named ``execution_id`` (default: a fresh one); the running execution.
    One whose start URLs are all out of scope completes at once.

    With ``queue_window`` > 0 at most that many of its tasks are in the queue at once (fair
    sharing; see StateStore.register_tasks). With ``max_active``, ActiveCapReached (and
    nothing created) when the tenant already has that many pending or running executions,
    checked atomically with the creation. With ``stages`` (assembled over ``ports`` by the
    process about to run them) the start URLs go through their frontier, their completion
    announces an execution that completes at once, and their cache holds its context."""
    clock = clock or SystemClock()
    execution = Execution(
        id=execution_id or uuid.uuid4().hex,
        workflow=workflow.name,
        workflow_version=version,
        tenant=tenant,
        status="pending",
        created_at=clock.wall(),
        params={**(params or {}), **({"queue_window": queue_window} if queue_window > 0 else {})},
    )
    if max_active is None:
        await ports.state.create_execution(execution)
    elif not await ports.state.create_execution_capped(execution, max_active):
        raise ActiveCapReached(max_active)
    if not await ports.state.transition(execution.id, "running", from_statuses={"pending"}):
        raise InvalidInputError(f"execution {execution.id} could not be started")
    running = await ports.state.get_execution(execution.id)
    assert running is not None
    ctx = ExecutionContext.build(running, workflow)
    if stages is None:
        frontier = Frontier(ports.seen, ports.state, ports.queue, clock)
        completion = Completion(ports.state, ports.blobs, clock)
    else:
        stages.contexts.put(ctx)
        frontier, completion = stages.frontier, stages.completion
    await publish_start_urls(ctx, frontier, completion, telemetry=telemetry)
    return running


async def publish_start_urls(
    ctx: ExecutionContext,
    frontier: Frontier,
    completion: Completion,
    *,
    skip: Container[str] = frozenset(),
    telemetry: Telemetry | None = None,
) -> list[Task]:
    """Publish the start URLs of ``ctx``'s workflow that its scope admits, but for the
    canonical URLs in ``skip`` (those a resumed run already queued or finished); the tasks
    published. When none is, the execution is asked whether it is complete: one with
    nothing to crawl (every start URL out of scope, nothing left of a resumed run)
    completes at once, its export holding what there is."""
    workflow = ctx.workflow
    starts = [
        d
        for d in map(ctx.rules.start, workflow.start_urls)
        if isinstance(d, Admit) and d.url not in skip
    ]
    telemetry = telemetry or Telemetry.create()
    with telemetry.execution_span(ctx.execution.id, workflow.name):
        published = await frontier.publish(ctx, starts) if starts else []
    if not published:
        await completion.check(ctx.execution.id)
    return published
