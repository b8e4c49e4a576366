"""Starting an execution: create it, move it to running, publish its start URLs.

Shared by ``trawl submit`` and the orchestrator's ``POST /v1/workflows/{name}/executions``,
so both publish exactly the same first tasks.
"""

from __future__ import annotations

import uuid

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.state import Execution
from worker.assemble import Ports
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


async def start_execution(
    ports: Ports,
    workflow: Workflow,
    *,
    tenant: str,
    version: int,
    params: dict[str, object] | None = None,
    max_active: int | None = None,
    clock: Clock | None = None,
) -> Execution:
    """Run ``workflow`` (stored as ``version``, with ``params['set']`` already applied) as a
    new execution. One whose start URLs are all out of scope completes at once. With
    ``max_active``, ActiveCapReached (and nothing created) when the tenant already has that
    many pending or running executions, checked atomically with the creation."""
    clock = clock or SystemClock()
    execution = Execution(
        id=uuid.uuid4().hex,
        workflow=workflow.name,
        workflow_version=version,
        tenant=tenant,
        status="pending",
        created_at=clock.wall(),
        params=dict(params or {}),
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
    starts = [d for d in map(ctx.rules.start, workflow.start_urls) if isinstance(d, Admit)]
    with Telemetry.create().execution_span(running.id, workflow.name):
        published = await Frontier(ports.seen, ports.state, ports.queue, clock).publish(ctx, starts)
    if not published:
        await Completion(ports.state, ports.blobs, clock).check(running.id)
    return running
