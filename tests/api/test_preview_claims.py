"""POST /v1/preview judges a page's links as the run does: a URL two nodes emit with two
markers is kept once under ``link_claims: first`` (the loser dropped, naming the winner)
and once per marker under ``every``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.memory_app import memory_api
from tests.claims_site import PagesSite, page


def workflow(base: str, claims: str) -> dict[str, Any]:
    return {
        "name": "preview-claims",
        "start_urls": [f"{base}/"],
        "engine": "http",
        "link_claims": claims,
        "phases": [
            {
                "name": "listing",
                "nodes": [
                    {"type": "extract_links", "selector": ".featured a", "marker": "featured"},
                    {"type": "extract_links", "selector": ".products a", "marker": "product"},
                ],
                "transitions": [
                    {"when": {"marker": "featured"}, "to": "item"},
                    {"when": {"marker": "product"}, "to": "item"},
                ],
            },
            {"name": "item", "nodes": [{"type": "extract", "fields": {"title": "h1"}}]},
        ],
    }


@pytest.mark.parametrize("claims", ["first", "every"])
async def test_preview_shows_duplicate_markers_as_the_run_treats_them(
    tmp_path: Path, claims: str
) -> None:
    listing = page("Listing", ("featured", "/item/1"), ("products", "/item/1"))
    with PagesSite({"/": listing}) as site:
        async with memory_api(tmp_path) as api:
            auth = await api.key("acme")
            body = {"workflow": workflow(site.base_url, claims), "url": site.url("/")}
            response = await api.client.post("/v1/preview", json=body, headers=auth)

    assert response.status_code == 200, response.text
    featured, product = response.json()["links"]
    url = site.url("/item/1")
    assert featured == {
        "url": url,
        "marker": "featured",
        "depth": 1,
        "phase": "item",
        "dropped": None,
        "claimed_by": None,
    }
    if claims == "first":
        assert product == {
            "url": url,
            "marker": "product",
            "depth": 1,
            "phase": "item",
            "dropped": "duplicate_marker",
            "claimed_by": "featured",
        }
    else:
        assert product == {**featured, "marker": "product"}
