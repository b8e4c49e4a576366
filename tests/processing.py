"""One TaskProcessor over memory adapters and a FakeClock, for tests of how single tasks
end: no pipeline, no sleeping, robots.txt off."""

from __future__ import annotations

from dataclasses import dataclass

from backends.clock import FakeClock
from backends.fetcher import Fetcher
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.ratelimit import RateLimiter
from backends.seen import SeenSet
from backends.state import Execution
from worker.context import ExecutionCache, ExecutionContext
from worker.frontier import Frontier
from worker.process import TaskProcessor
from worker.robots import RobotsCache, RobotsFetch
from workflows import Workflow


@dataclass
class OneProcessor:
    processor: TaskProcessor
    queue: MemoryTaskQueue
    state: MemoryStateStore
    clock: FakeClock


async def _no_robots(url: str, user_agent: str) -> tuple[int, str]:
    raise AssertionError("robots.txt is off in this workflow")


def one_processor(
    workflow: Workflow,
    fetcher: Fetcher,
    *,
    seen: SeenSet | None = None,
    limiter: RateLimiter | None = None,
    robots: RobotsFetch = _no_robots,
) -> OneProcessor:
    """A processor of execution ``e1`` of ``workflow`` on the http engine."""
    clock = FakeClock()
    queue = MemoryTaskQueue(clock, ack_deadline_s=3600)
    state = MemoryStateStore(clock)
    execution = Execution(
        id="e1", workflow=workflow.name, workflow_version=1, created_at=clock.wall()
    )
    contexts = ExecutionCache(state)
    contexts.put(ExecutionContext.build(execution, workflow))
    processor = TaskProcessor(
        contexts=contexts,
        fetchers={"http": fetcher},
        limiter=limiter or MemoryRateLimiter(clock),
        robots=RobotsCache(robots, clock),
        frontier=Frontier(seen or MemorySeenSet(), state, queue),
        clock=clock,
    )
    return OneProcessor(processor, queue, state, clock)
