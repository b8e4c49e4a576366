"""/v1/workflows over the memory adapters: what an author sees when posting workflows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.memory_app import memory_api

GOOD = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
"""

# Problems at once: a bad selector, a transition to nowhere.
BAD = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: "h1[["}}
      - {type: extract_links, marker: item}
    transitions: [{when: {marker: item}, to: nowhere}]
"""

YAML = {"Content-Type": "application/yaml"}


async def test_post_yaml_then_read_it_back(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        created = await api.client.post("/v1/workflows", content=GOOD, headers=auth | YAML)
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["name"], body["version"]) == ("shop", 1)
        assert body["source"] == GOOD
        assert body["spec"]["start_urls"] == ["http://shop.test/"]

        listed = await api.client.get("/v1/workflows", headers=auth)
        assert [(w["name"], w["version"]) for w in listed.json()] == [("shop", 1)]
        got = await api.client.get("/v1/workflows/shop", headers=auth)
        assert got.json()["spec"] == body["spec"]


async def test_json_bodies_are_accepted_too(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        doc = {
            "name": "json-shop",
            "start_urls": ["http://shop.test/"],
            "phases": [{"name": "p", "nodes": [{"type": "extract", "fields": {"t": "h1"}}]}],
        }
        created = await api.client.post("/v1/workflows", json=doc, headers=auth)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "json-shop"


@pytest.mark.integration  # runs `python -m trawl validate` as a child process
async def test_invalid_workflow_lists_every_problem_like_trawl_validate(tmp_path: Path) -> None:
    workflow_file = tmp_path / "bad.yaml"
    workflow_file.write_text(BAD)
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "trawl", "validate", str(workflow_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    head, *cli_lines = cli.stderr.splitlines()  # "<file>: N problems", then one per problem
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        response = await api.client.post("/v1/workflows", content=BAD, headers=auth | YAML)
    assert response.status_code == 422
    body = response.json()
    assert head == f"{workflow_file}: {body['detail']}"
    assert len(cli_lines) >= 2
    problems = body["extra"]["problems"]
    assert [f"{p['path']}: {p['message']}" for p in problems] == cli_lines
    paths = [p["path"] for p in problems]
    assert any(p.startswith("phases[0].nodes[0].fields.title") for p in paths)
    assert any(p.startswith("phases[0].transitions") for p in paths)


async def test_unparseable_bodies_say_where(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        response = await api.client.post(
            "/v1/workflows", content="name: [unclosed", headers=auth | YAML
        )
        assert response.status_code == 422
        assert "line" in response.text
        response = await api.client.post(
            "/v1/workflows",
            content=b"{not json",
            headers=auth | {"Content-Type": "application/json"},
        )
        assert response.status_code == 422


async def test_put_makes_a_new_version_and_post_refuses_an_existing_name(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await api.client.post("/v1/workflows", content=GOOD, headers=auth | YAML)
        again = await api.client.post("/v1/workflows", content=GOOD, headers=auth | YAML)
        assert again.status_code == 409
        assert "PUT /v1/workflows/shop" in again.json()["detail"]

        v2 = GOOD.replace("title: h1", "title: h2")
        updated = await api.client.put("/v1/workflows/shop", content=v2, headers=auth | YAML)
        assert updated.status_code == 200, updated.text
        assert updated.json()["version"] == 2
        first = await api.client.get("/v1/workflows/shop?version=1", headers=auth)
        assert first.json()["source"] == GOOD

        renamed = GOOD.replace("name: shop", "name: other")
        wrong = await api.client.put("/v1/workflows/shop", content=renamed, headers=auth | YAML)
        assert wrong.status_code == 422
        assert wrong.json()["extra"]["problems"][0]["path"] == "name"
        missing = await api.client.put("/v1/workflows/nope", content=GOOD, headers=auth | YAML)
        assert missing.status_code == 404


async def test_delete(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        await api.client.post("/v1/workflows", content=GOOD, headers=auth | YAML)
        deleted = await api.client.delete("/v1/workflows/shop", headers=auth)
        assert deleted.status_code == 204
        assert (await api.client.get("/v1/workflows/shop", headers=auth)).status_code == 404
        assert (await api.client.delete("/v1/workflows/shop", headers=auth)).status_code == 404


async def test_a_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    from orchestrator.services import Limits

    async with memory_api(tmp_path, limits=Limits(max_request_bytes=2048)) as api:
        auth = await api.key("acme")
        big = GOOD + "#" + "x" * 4096 + "\n"
        response = await api.client.post("/v1/workflows", content=big, headers=auth | YAML)
        assert response.status_code == 413
