"""``GET /v1/executions/{id}/objects/{path}``: one output object of an execution, streamed,
only at a path its outputs list names, and only to its tenant."""

from __future__ import annotations

from pathlib import Path

from backends.state import OutputObject
from tests.api.memory_app import Api, memory_api

WORKFLOW = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
"""
YAML = {"Content-Type": "application/yaml"}
PART = b'{"phase": "page", "url": "http://shop.test/", "data": {"title": "Shop"}}\n'


async def started(api: Api, auth: dict[str, str]) -> str:
    created = await api.client.post("/v1/workflows", content=WORKFLOW, headers=auth | YAML)
    assert created.status_code == 201, created.text
    response = await api.client.post("/v1/workflows/shop/executions", headers=auth)
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["id"]
    return execution_id


async def write_output(api: Api, execution_id: str, relative: str, data: bytes, kind: str) -> None:
    """What the sink (a part) or the export does: the object, then its registration."""
    path = f"{execution_id}/{relative}"
    await api.services.ports.blobs.write(path, data)
    output = OutputObject(path=path, size_bytes=len(data), records=1, kind=kind)  # type: ignore[arg-type]
    await api.services.ports.state.add_output(execution_id, output)


async def test_a_listed_part_file_is_served_while_the_execution_runs(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        eid = await started(api, auth)
        await write_output(api, eid, "parts/page/part-w1-000001.jsonl", PART, "part")

        outputs = (await api.client.get(f"/v1/executions/{eid}/outputs", headers=auth)).json()
        assert [o["path"] for o in outputs] == [f"{eid}/parts/page/part-w1-000001.jsonl"]
        got = await api.client.get(
            f"/v1/executions/{eid}/objects/parts/page/part-w1-000001.jsonl", headers=auth
        )
        assert got.status_code == 200, got.text
        assert got.content == PART
        assert got.headers["content-type"] == "application/octet-stream"


async def test_paths_with_equals_signs_and_export_files_are_served(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        eid = await started(api, auth)
        await write_output(api, eid, "export/records/phase=page/part-0.jsonl", PART, "export")
        await write_output(api, eid, "export/manifest.json", b"{}", "manifest")

        dataset = await api.client.get(
            f"/v1/executions/{eid}/objects/export/records/phase%3Dpage/part-0.jsonl",
            headers=auth,
        )
        assert dataset.status_code == 200, dataset.text
        assert dataset.content == PART
        manifest = await api.client.get(
            f"/v1/executions/{eid}/objects/export/manifest.json", headers=auth
        )
        assert manifest.content == b"{}"


async def test_only_paths_the_outputs_list_names_are_served(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        eid = await started(api, auth)
        other = await started_other(api, auth)
        # In the bucket but not an output of this execution: another execution's part and
        # an object no execution registered.
        await write_output(api, other, "parts/page/part-w1-000001.jsonl", PART, "part")
        await api.services.ports.blobs.write(f"{eid}/parts/page/unlisted.jsonl", PART)
        for path in (
            "parts/page/unlisted.jsonl",
            f"../{other}/parts/page/part-w1-000001.jsonl",
            f"{eid}/parts/page/unlisted.jsonl",
            "export/records.jsonl",  # not written yet
        ):
            response = await api.client.get(f"/v1/executions/{eid}/objects/{path}", headers=auth)
            assert response.status_code == 404, path
            assert response.json()["status_code"] == 404


async def started_other(api: Api, auth: dict[str, str]) -> str:
    response = await api.client.post("/v1/workflows/shop/executions", headers=auth)
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["id"]
    return execution_id


async def test_another_tenants_objects_are_404_and_a_key_is_required(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        owner = await api.key("acme")
        stranger = await api.key("globex")
        eid = await started(api, owner)
        await write_output(api, eid, "parts/page/part-w1-000001.jsonl", PART, "part")
        url = f"/v1/executions/{eid}/objects/parts/page/part-w1-000001.jsonl"

        assert (await api.client.get(url, headers=stranger)).status_code == 404
        assert (await api.client.get(url)).status_code == 401
        missing = await api.client.get("/v1/executions/nope/objects/x.jsonl", headers=owner)
        assert missing.status_code == 404


async def test_the_route_is_in_the_openapi_schema(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        schema = (await api.client.get("/schema/openapi.json")).json()
        route = schema["paths"]["/v1/executions/{execution_id}/objects/{object_path}"]["get"]
        assert {"200", "401", "404"} <= set(route["responses"])
        assert set(route["responses"]["200"]["content"]) == {"application/octet-stream"}
        assert route["security"] == [{"BearerToken": []}]
