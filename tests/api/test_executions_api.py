"""Executions over the memory adapters: start, watch, cancel, tenancy, the caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.services import Limits
from tests.api.memory_app import Api, memory_api

WORKFLOW = """
name: shop
start_urls: ["http://shop.test/", "http://shop.test/sale"]
max_pages: 50
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
      - {type: extract_links}
"""
YAML = {"Content-Type": "application/yaml"}


async def post_workflow(api: Api, auth: dict[str, str]) -> None:
    created = await api.client.post("/v1/workflows", content=WORKFLOW, headers=auth | YAML)
    assert created.status_code == 201, created.text


async def test_start_publishes_the_start_urls(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        started = await api.client.post(
            "/v1/workflows/shop/executions", json={"set": ["max_pages=5"]}, headers=auth
        )
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["status"] == "running"
        assert body["workflow_version"] == 1
        assert body["overrides"] == ["max_pages=5"]
        assert body["pages"]["published"] == 2
        assert api.queue.pending() == 2

        got = await api.client.get(f"/v1/executions/{body['id']}", headers=auth)
        assert got.status_code == 200
        assert got.json()["pages"] == {
            "published": 2,
            "finished": 0,
            "succeeded": 0,
            "failed": 0,
            "filtered": 0,
        }
        listed = await api.client.get("/v1/workflows/shop/executions", headers=auth)
        assert [e["id"] for e in listed.json()] == [body["id"]]


async def test_overrides_are_validated_with_their_path(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        bad = await api.client.post(
            "/v1/workflows/shop/executions", json={"set": ["max_pages=-3"]}, headers=auth
        )
        assert bad.status_code == 422
        assert bad.json()["extra"]["problems"][0]["path"] == "max_pages"
        unknown = await api.client.post(
            "/v1/workflows/shop/executions", json={"sett": []}, headers=auth
        )
        assert unknown.status_code == 400
        assert "sett" in unknown.text


async def test_start_urls_the_guard_refuses_are_a_422(tmp_path: Path) -> None:
    class RefuseSale:
        async def check_url(self, url: str) -> None:
            from backends.errors import PermanentError

            if url.endswith("/sale"):
                raise PermanentError(f"refused {url}", error_class="blocked_address")

    async with memory_api(tmp_path, guard=RefuseSale()) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        refused = await api.client.post("/v1/workflows/shop/executions", headers=auth)
        assert refused.status_code == 422
        assert refused.json()["extra"]["problems"] == [
            {"path": "start_urls[1]", "message": "refused http://shop.test/sale"}
        ]
        assert api.queue.pending() == 0


async def test_cancel_stops_it_and_writes_the_export(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        started = (await api.client.post("/v1/workflows/shop/executions", headers=auth)).json()
        eid = started["id"]
        early = await api.client.get(f"/v1/executions/{eid}/records", headers=auth)
        assert early.status_code == 409
        assert "running" in early.json()["detail"]

        cancelled = await api.client.post(f"/v1/executions/{eid}/cancel", headers=auth)
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["finished_at"] is not None
        again = await api.client.post(f"/v1/executions/{eid}/cancel", headers=auth)
        assert again.status_code == 409
        assert again.json()["detail"] == f"execution {eid} is already cancelled"

        records = await api.client.get(f"/v1/executions/{eid}/records", headers=auth)
        assert records.status_code == 200
        assert records.text == ""  # nothing was fetched before the cancel
        outputs = (await api.client.get(f"/v1/executions/{eid}/outputs", headers=auth)).json()
        assert sorted(o["kind"] for o in outputs) == ["export", "summary"]

        events = await api.client.get(f"/v1/executions/{eid}/events", headers=auth)
        assert events.status_code == 200
        assert "event: progress" in events.text
        assert "event: end\r\ndata: cancelled" in events.text


async def test_a_tenant_cannot_see_or_touch_another_tenants_things(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        a = await api.key("tenant-a")
        b = await api.key("tenant-b")
        await post_workflow(api, a)
        eid = (await api.client.post("/v1/workflows/shop/executions", headers=a)).json()["id"]

        c = api.client
        assert (await c.get("/v1/workflows", headers=b)).json() == []
        for response in [
            await c.get("/v1/workflows/shop", headers=b),
            await c.put("/v1/workflows/shop", content=WORKFLOW, headers=b | YAML),
            await c.delete("/v1/workflows/shop", headers=b),
            await c.post("/v1/workflows/shop/executions", headers=b),
            await c.get(f"/v1/executions/{eid}", headers=b),
            await c.post(f"/v1/executions/{eid}/cancel", headers=b),
            await c.get(f"/v1/executions/{eid}/records", headers=b),
            await c.get(f"/v1/executions/{eid}/outputs", headers=b),
            await c.get(f"/v1/executions/{eid}/events", headers=b),
        ]:
            assert response.status_code == 404, response.request.url
        assert (await c.get("/v1/workflows/shop/executions", headers=b)).json() == []
        # Tenant A's things are untouched.
        assert (await c.get(f"/v1/executions/{eid}", headers=a)).json()["status"] == "running"
        # B may have a workflow of the same name: names are per tenant.
        assert (
            await c.post("/v1/workflows", content=WORKFLOW, headers=b | YAML)
        ).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer trawl_nope"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "not-bearer"],
)
async def test_without_a_valid_key_everything_is_401(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    async with memory_api(tmp_path) as api:
        response = await api.client.get("/v1/workflows", headers=headers)
        assert response.status_code == 401
        assert "API key" in response.json()["detail"]
        assert (await api.client.get("/healthz")).status_code == 200


async def test_running_executions_are_capped_per_tenant(tmp_path: Path) -> None:
    async with memory_api(tmp_path, limits=Limits(max_running_executions=2)) as api:
        auth = await api.key("acme")
        other = await api.key("other")
        await post_workflow(api, auth)
        await post_workflow(api, other)
        ids = []
        for _ in range(2):
            started = await api.client.post("/v1/workflows/shop/executions", headers=auth)
            assert started.status_code == 202
            ids.append(started.json()["id"])
        third = await api.client.post("/v1/workflows/shop/executions", headers=auth)
        assert third.status_code == 429
        assert "2 executions are already running" in third.json()["detail"]
        # Another tenant is not affected; a cancel frees a slot.
        assert (
            await api.client.post("/v1/workflows/shop/executions", headers=other)
        ).status_code == 202
        await api.client.post(f"/v1/executions/{ids[0]}/cancel", headers=auth)
        again = await api.client.post("/v1/workflows/shop/executions", headers=auth)
        assert again.status_code == 202


async def test_a_workflow_with_running_executions_is_not_deleted(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        eid = (await api.client.post("/v1/workflows/shop/executions", headers=auth)).json()["id"]
        refused = await api.client.delete("/v1/workflows/shop", headers=auth)
        assert refused.status_code == 409
        assert f"/v1/executions/{eid}/cancel" in refused.json()["detail"]


async def test_readyz_names_what_is_down(tmp_path: Path) -> None:
    async def fine() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("redis at 127.0.0.1:1 refused the connection")

    async with memory_api(tmp_path, checks={"postgres": fine, "redis": broken}) as api:
        response = await api.client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "checked": ["postgres", "redis"],
            # The component and the kind of failure; never the library's text (addresses,
            # credentials), which goes to the log.
            "down": {"redis": "unavailable (ConnectionError)"},
        }
    async with memory_api(tmp_path, checks={"postgres": fine}) as api:
        response = await api.client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checked": ["postgres"], "down": {}}


async def test_the_openapi_schema_is_served(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        schema = (await api.client.get("/schema/openapi.json")).json()
        assert "/v1/workflows" in schema["paths"]
        assert "/v1/executions/{execution_id}/records" in schema["paths"]
        assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
        assert schema["components"]["schemas"]["StartRequest"]["additionalProperties"] is False
        # The documented example is a workflow the API accepts, and its links lead on.
        post = schema["paths"]["/v1/workflows"]["post"]
        example = post["requestBody"]["content"]["application/json"]["example"]
        auth = await api.key("acme")
        created = await api.client.post("/v1/workflows", json=example, headers=auth)
        assert created.status_code == 201, created.text
        links = post["responses"]["201"]["links"]
        assert links["GetWorkflow"]["parameters"] == {"name": "$response.body#/name"}
        start = schema["paths"]["/v1/workflows/{name}/executions"]["post"]
        assert "CancelExecution" in start["responses"]["202"]["links"]
        assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
