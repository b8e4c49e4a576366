"""What the API answers about a workflow with problems of every layer, and ``set``
overrides that address a phase by name."""

from __future__ import annotations

from pathlib import Path

from tests.api.memory_app import memory_api

YAML = {"Content-Type": "application/yaml"}

WORKFLOW = """
name: named-phases
start_urls: ["http://shop.test/"]
phases:
  - name: listing
    nodes: [{type: extract_links, marker: item}]
    transitions: [{when: {marker: item}, to: product}]
  - name: product
    nodes: [{type: extract, fields: {title: h1}}]
"""

# A wrong type beside semantic problems: all of them in one answer, in document order.
MIXED = """
name: mixed
start_urls: ["http://shop.test/"]
max_pages: lots
phases:
  - name: listing
    nodes: [{type: extract_links, selector: 'h1[', marker: item}]
    transitions: [{when: {marker: item, url: '(x'}, to: prodcut}]
  - name: product
"""


async def test_a_post_reports_structural_and_semantic_problems_together(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        response = await api.client.post("/v1/workflows", content=MIXED, headers=auth | YAML)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "5 problems"
    assert [(p["path"], p["message"]) for p in response.json()["extra"]["problems"]] == [
        ("max_pages", 'expected an integer, got string "lots"'),
        (
            "phases[0].nodes[0].selector",
            "invalid CSS selector 'h1[': expected an attribute name at position 3 (the end)",
        ),
        ("phases[0].transitions[0].when.url", "invalid regex: missing ) at '(x'"),
        (
            "phases[0].transitions[0].to",
            "unknown phase 'prodcut' (phases: listing, product); did you mean 'product'?",
        ),
        (
            "phases[1]",
            "phase 'product' is unreachable: no transition path from start phase 'listing'",
        ),
    ]


async def test_start_overrides_address_a_phase_by_name(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        created = await api.client.post("/v1/workflows", content=WORKFLOW, headers=auth | YAML)
        assert created.status_code == 201, created.text
        start = "/v1/workflows/named-phases/executions"
        started = await api.client.post(
            start, json={"set": ["phases[product].engine=http"]}, headers=auth
        )
        assert started.status_code == 202, started.text
        assert started.json()["overrides"] == ["phases[product].engine=http"]
        unknown = await api.client.post(
            start, json={"set": ["phases[prodct].engine=http"]}, headers=auth
        )
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["extra"]["problems"] == [
            {
                "path": "phases[prodct].engine",
                "message": "--set: no phase named 'prodct' (phases: listing, product); "
                "did you mean 'product'?",
            }
        ]
