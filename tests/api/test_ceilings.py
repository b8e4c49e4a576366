"""A shared deployment holds every workflow to the operator's ceilings, and checks it away
from the event loop: a costly document fails alone while the API keeps answering."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil

from orchestrator.auth import create_key
from orchestrator.services import Limits
from tests.api.memory_app import memory_api, memory_services, served
from tests.site import SiteServer
from workflows.ceilings import Ceilings

CEILINGS = Ceilings(max_body_bytes=20_000_000, max_fetch_timeout_s=60, max_pages=500)


def workflow(**extra: Any) -> dict[str, Any]:
    return {
        "name": "shop",
        "start_urls": ["http://127.0.0.1:9/"],
        "engine": "http",
        "phases": [{"name": "page", "nodes": [{"type": "extract_links"}]}],
        **extra,
    }


async def test_a_workflow_asking_for_more_than_the_ceilings_is_a_422_naming_each(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path, limits=Limits(ceilings=CEILINGS)) as api:
        auth = await api.key("acme")
        greedy = workflow(
            fetch={"max_body_bytes": 10**12, "timeout_s": 1e9},
            politeness={"requests_per_second": 1e6, "max_concurrency_per_host": 100000},
            max_pages=10**9,
        )
        response = await api.client.post("/v1/workflows", json=greedy, headers=auth)
        assert response.status_code == 422, response.text
        problems = {p["path"]: p["message"] for p in response.json()["extra"]["problems"]}
        assert problems["fetch.max_body_bytes"] == (
            "is 1000000000000; this deployment allows at most 20000000 "
            "(TRAWL_CEILING_MAX_BODY_BYTES)"
        )
        assert "TRAWL_CEILING_MAX_FETCH_TIMEOUT_S" in problems["fetch.timeout_s"]
        assert "at most 100 " in problems["politeness.requests_per_second"]
        assert "at most 32 " in problems["politeness.max_concurrency_per_host"]
        assert "at most 500 " in problems["max_pages"]


async def test_no_page_budget_means_the_deployments_and_overrides_are_held_too(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path, limits=Limits(ceilings=CEILINGS)) as api:
        auth = await api.key("acme")
        created = await api.client.post("/v1/workflows", json=workflow(), headers=auth)
        assert created.status_code == 201, created.text
        assert created.json()["spec"]["max_pages"] == 500
        start = "/v1/workflows/shop/executions"
        over = await api.client.post(start, json={"set": ["fetch.timeout_s=1e9"]}, headers=auth)
        assert over.status_code == 422, over.text
        [problem] = over.json()["extra"]["problems"]
        assert problem["path"] == "fetch.timeout_s"
        fine = await api.client.post(start, json={"set": ["fetch.timeout_s=30"]}, headers=auth)
        assert fine.status_code == 202, fine.text


async def test_too_many_items_in_one_list_is_refused(tmp_path: Path) -> None:
    async with memory_api(tmp_path, limits=Limits(ceilings=Ceilings(max_items=10))) as api:
        auth = await api.key("acme")
        many = workflow(scope={"include": [f"/p{i}" for i in range(11)]})
        response = await api.client.post("/v1/workflows", json=many, headers=auth)
        assert response.status_code == 422, response.text
        [problem] = response.json()["extra"]["problems"]
        assert problem == {
            "path": "scope.include",
            "message": "has 11 items; this deployment allows at most 10 (TRAWL_CEILING_MAX_ITEMS)",
        }


async def test_a_costly_document_fails_alone_while_the_api_answers(tmp_path: Path) -> None:
    limits = Limits(ceilings=Ceilings(max_items=200_000), max_request_bytes=4 << 20)
    services = memory_services(tmp_path, limits=limits)
    services.admission.timeout_s = 1.0
    auth = {"Authorization": f"Bearer {await create_key(services.ports.state, 'acme')}"}
    patterns = [f"/section-{i}/(item|page)+[0-9]*$" for i in range(60_000)]
    body = msgspec.json.encode(workflow(scope={"include": patterns}))
    async with served(services) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        costly = asyncio.create_task(
            client.post(
                "/v1/workflows", content=body, headers=auth | {"Content-Type": "application/json"}
            )
        )
        # While it is being checked, the event loop is free: health answers again and again.
        latencies: list[float] = []
        while not costly.done():
            started = time.perf_counter()
            health = await client.get("/healthz")
            latencies.append(time.perf_counter() - started)
            assert health.status_code == 200
            await asyncio.sleep(0.02)
        response = await costly
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == (
            "the workflow could not be checked: took longer than 1 s"
        )
        assert response.json()["extra"] == {"error_class": "workflow_too_costly"}
        # The helper that was killed is replaced: the next workflow is checked as usual.
        created = await client.post("/v1/workflows", json=workflow(), headers=auth)
        assert created.status_code == 201, created.text
    assert len(latencies) >= 5, f"/healthz answered {len(latencies)} times during the check"
    assert max(latencies) < 1.0, f"/healthz took up to {max(latencies):.3f} s meanwhile"


async def test_a_huge_preview_is_cut_at_its_body_limit_while_the_api_answers(
    tmp_path: Path, site: SiteServer
) -> None:
    """A 150 MB page: the preview reads at most the workflow's max_body_bytes (itself under
    the ceiling), fails with a clear 422, and the orchestrator neither stalls nor grows."""
    services = memory_services(tmp_path, limits=Limits(ceilings=CEILINGS))
    auth = {"Authorization": f"Bearer {await create_key(services.ports.state, 'acme')}"}
    me = psutil.Process()
    before = me.memory_info().rss
    body = {
        "workflow": workflow(fetch={"max_body_bytes": 5_000_000}),
        "url": site.url(f"/huge?bytes={150 * 1024 * 1024}"),
    }
    async with served(services) as base, httpx.AsyncClient(base_url=base, timeout=60) as client:
        preview = asyncio.create_task(client.post("/v1/preview", json=body, headers=auth))
        answered = 0
        while not preview.done():
            health = await client.get("/healthz")
            assert health.status_code == 200
            answered += 1
            await asyncio.sleep(0.02)
        response = await preview
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"{body['url']} is larger than 5000000 bytes"
    assert response.json()["extra"] == {"error_class": "too_large"}
    assert answered >= 1
    grown_mb = (me.memory_info().rss - before) / 1e6
    assert grown_mb < 100, f"the orchestrator grew by {grown_mb:.0f} MB for one preview"
