"""The request schemas are as strict as the handlers: what the OpenAPI document calls valid
is not refused for its shape, and what it calls invalid is refused before any work, with the
field named."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.api.memory_app import Api, memory_api

WORKFLOW = {
    "name": "shop",
    "start_urls": ["http://127.0.0.1:9/"],
    "engine": "http",
    "phases": [{"name": "page", "nodes": [{"type": "extract_links"}]}],
}


async def schema_of(api: Api) -> dict[str, Any]:
    response = await api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_a_preview_with_empty_strings_is_refused_by_the_schema(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        preview = (await schema_of(api))["components"]["schemas"]["PreviewRequest"]
        assert preview["properties"]["url"]["minLength"] >= 1
        assert re.search(preview["properties"]["url"]["pattern"], "https://shop.example/")
        assert not re.search(preview["properties"]["url"]["pattern"], "")
        cases = {
            "url": {"workflow": WORKFLOW, "url": ""},
            "phase": {"workflow": WORKFLOW, "url": "http://127.0.0.1:9/", "phase": ""},
            "workflow": {"workflow": "", "url": "http://127.0.0.1:9/"},
            "depth": {"workflow": WORKFLOW, "url": "http://127.0.0.1:9/", "depth": -1},
        }
        for field, body in cases.items():
            response = await api.client.post("/v1/preview", json=body, headers=auth)
            assert response.status_code == 400, (field, response.text)
            assert response.json()["extra"][0]["key"] == field, response.text


async def test_set_items_without_an_equals_sign_are_refused_by_the_schema(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        start = (await schema_of(api))["components"]["schemas"]["StartRequest"]
        pattern = start["properties"]["set"]["items"]["pattern"]
        for good in ("max_pages=100", "phases[0].engine=http", " max_depth = 2"):
            assert re.search(pattern, good), good
        for bad in ("max_pages", "=5", "a..b=1"):
            assert not re.search(pattern, bad), bad
        created = await api.client.post("/v1/workflows", json=WORKFLOW, headers=auth)
        assert created.status_code == 201, created.text
        response = await api.client.post(
            "/v1/workflows/shop/executions", json={"set": ["max_pages"]}, headers=auth
        )
        assert response.status_code == 422, response.text
        assert "'max_pages': expected key=value, e.g. max_depth=2" in response.text
        empty = await api.client.post(
            "/v1/workflows/shop/executions", json={"set": [""]}, headers=auth
        )
        assert empty.status_code == 400, empty.text
        assert empty.json()["extra"][0]["key"] == "set[0]"


async def test_a_yaml_workflow_body_is_documented_as_a_mapping(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        body = (await schema_of(api))["paths"]["/v1/workflows"]["post"]["requestBody"]
        for media in ("application/yaml", "application/json"):
            documented = body["content"][media]["schema"]
            assert documented["type"] == "object", media
            assert set(documented["required"]) == {"name", "start_urls", "phases"}
        # What the documented YAML example serialises to is accepted; a bare string is
        # outside the schema, and the handler names the problem.
        example = yaml.safe_dump(body["content"]["application/yaml"]["example"])
        yaml_type = {"Content-Type": "application/yaml"}
        created = await api.client.post("/v1/workflows", content=example, headers=auth | yaml_type)
        assert created.status_code == 201, created.text
        bare = await api.client.post("/v1/workflows", content="just text", headers=auth | yaml_type)
        assert bare.status_code == 422
        assert "a workflow must be a mapping, got a string" in bare.text
