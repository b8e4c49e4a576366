"""Every error docs/api.md documents, as the client raises it: the class of its status, with
the detail, the problems of a 422 and the Retry-After of a 429, decoded from the API's own
error body (the real app over the memory adapters, served on a free port)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from backends.errors import RetryableError
from backends.memory import MemoryStateStore
from backends.state import StoredWorkflow
from orchestrator.auth import create_key
from orchestrator.quotas import Quotas
from orchestrator.services import Limits
from tests.api.memory_app import memory_services, served
from tests.unit.test_client import WORKFLOW, serving
from trawl.client import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    NotFound,
    Problem,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from trawl.client.errors import error_of

INVALID = """
name: shop
start_urls: ["http://shop.test/"]
max_depth: -1
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: "h1[["}}
"""


async def test_401_for_a_key_the_api_does_not_know(tmp_path: Path) -> None:
    services = memory_services(tmp_path)
    async with served(services) as base, Client(base, "trawl_not-a-key") as client:
        with pytest.raises(Unauthorized) as refused:
            await client.list_workflows()
    assert refused.value.status == 401
    assert refused.value.detail == "unknown API key"


async def test_400_for_a_body_that_does_not_fit(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.client.put_workflow(WORKFLOW)
        with pytest.raises(BadRequest) as refused:
            await api.client.start("shop", set=["x"])  # shorter than any key=value
        assert refused.value.status == 400
        assert refused.value.problems == []


async def test_404_for_what_is_missing_and_for_another_tenants(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        with pytest.raises(NotFound, match="no execution 'nope'"):
            await api.client.get("nope")
        await api.client.put_workflow(WORKFLOW)
        eid = (await api.client.start("shop")).id
        other_key = await create_key(api.services.ports.state, "globex")
        base = str(api.client._http.base_url)
        async with Client(base, other_key) as other:
            for call in (other.get, other.cancel, other.outputs):
                with pytest.raises(NotFound):
                    await call(eid)
            with pytest.raises(NotFound):
                [r async for r in other.records(eid, follow=True)]
            with pytest.raises(NotFound):
                await other.start("shop")


async def test_409_for_a_conflict(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.client.put_workflow(WORKFLOW)
        eid = (await api.client.start("shop")).id
        with pytest.raises(Conflict, match="running execution") as refused:
            await api.client.delete_workflow("shop")
        assert f"/v1/executions/{eid}/cancel" in refused.value.detail
        with pytest.raises(Conflict, match="written when it finishes"):
            [r async for r in api.client.records(eid)]


async def test_413_for_a_body_over_the_limit(tmp_path: Path) -> None:
    async with serving(tmp_path, Limits(max_request_bytes=1024)) as api:
        with pytest.raises(TooLarge) as refused:
            await api.client.put_workflow(WORKFLOW + "# padding\n" * 200)
        assert refused.value.status == 413


async def test_422_carries_every_problem_with_its_path(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        with pytest.raises(Unprocessable) as refused:
            await api.client.put_workflow(INVALID)
        error = refused.value
        assert error.status == 422
        paths = [p.path for p in error.problems]
        assert "max_depth" in paths
        assert all(isinstance(p, Problem) and p.message for p in error.problems)
        assert error.extra["problems"][0] == {
            "path": error.problems[0].path,
            "message": error.problems[0].message,
        }
        assert "max_depth: " in str(error)  # the problems are in the message too

        await api.client.put_workflow(WORKFLOW)
        with pytest.raises(Unprocessable) as override:
            await api.client.start("shop", set=["max_pages=-3"])
        assert [p.path for p in override.value.problems] == ["max_pages"]


async def test_429_with_retry_after_when_the_key_is_over_its_rate(tmp_path: Path) -> None:
    limits = Limits(quotas=Quotas(api_requests_per_s=0.01, api_burst=2))
    async with serving(tmp_path, limits) as api:
        await api.client.list_workflows()
        await api.client.list_workflows()
        with pytest.raises(TooManyRequests) as refused:
            await api.client.list_workflows()
        assert refused.value.status == 429
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 1
        assert "request rate" in refused.value.detail


async def test_429_when_the_tenant_has_its_cap_of_running_executions(tmp_path: Path) -> None:
    async with serving(tmp_path, Limits(max_running_executions=1)) as api:
        await api.client.put_workflow(WORKFLOW)
        await api.client.start("shop")
        with pytest.raises(TooManyRequests, match="1 executions are already running"):
            await api.client.start("shop")


class DownStore(MemoryStateStore):
    async def list_workflows(self, tenant: str) -> list[StoredWorkflow]:
        raise RetryableError("postgres did not answer", error_class="connection")


async def test_503_when_a_backend_does_not_answer(tmp_path: Path) -> None:
    services = memory_services(tmp_path)
    services.ports = dataclasses.replace(services.ports, state=DownStore())
    key = await create_key(services.ports.state, "acme")
    async with served(services) as base, Client(base, key) as client:
        with pytest.raises(Unavailable) as refused:
            await client.list_workflows()
    assert refused.value.status == 503
    assert refused.value.detail == "postgres did not answer"
    assert refused.value.extra == {"error_class": "connection"}


def test_a_body_that_is_not_the_apis_still_makes_an_error() -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    error = error_of(502, page, httpx.Headers({"Retry-After": "7"}))
    assert type(error) is ApiError
    assert (error.status, error.retry_after_s) == (502, 7.0)
    assert "502 Bad Gateway" in error.detail
    empty = error_of(503, b"", httpx.Headers())
    assert isinstance(empty, Unavailable)
    assert empty.detail == "Service Unavailable"
