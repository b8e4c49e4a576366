"""A typed Python client of the orchestrator's HTTP API (docs/api.md, "Python client").

    async with Client("http://127.0.0.1:8080", key) as client:
        await client.put_workflow(Path("aqua.yaml").read_text())
        execution = await client.start("aqua-shop", set=["max_pages=100"])
        async for record in client.records(execution.id, follow=True):
            print(record["url"])
        final = await client.wait(execution.id)

Importing it needs httpx and msgspec only: not Litestar, nor the worker and its engines.
"""

from orchestrator.schedule_wire import ScheduleFireOut, ScheduleOut
from orchestrator.wire import (
    ErrorCount,
    ExecutionHealth,
    ExecutionOut,
    ExecutionSummary,
    FunnelRow,
    OutputOut,
    Pages,
    WorkflowOut,
    WorkflowSummary,
)
from trawl.client.client import Client
from trawl.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    ServerError,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "ErrorCount",
    "ExecutionHealth",
    "ExecutionOut",
    "ExecutionSummary",
    "Forbidden",
    "FunnelRow",
    "NotFound",
    "OutputOut",
    "Pages",
    "Problem",
    "ScheduleFireOut",
    "ScheduleOut",
    "ServerError",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "WorkflowOut",
    "WorkflowSummary",
]
