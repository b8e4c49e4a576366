"""POST /v1/preview: one phase on one page of the local test site, nothing enqueued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.memory_app import memory_api
from tests.site import SiteServer


def workflow(base: str) -> dict[str, Any]:
    return {
        "name": "preview-shop",
        "start_urls": [f"{base}/"],
        "engine": "http",
        "phases": [
            {
                "name": "product",
                "nodes": [
                    {"type": "extract", "fields": {"name": "h1", "price": ".price"}},
                    {"type": "extract_links", "selector": "a.product", "marker": "product"},
                ],
            }
        ],
    }


async def test_preview_returns_the_record_and_the_judged_links(
    tmp_path: Path, site: SiteServer
) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        body = {"workflow": workflow(site.base_url), "url": site.url("/product/1")}
        response = await api.client.post("/v1/preview", json=body, headers=auth)
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["phase"], report["engine"], report["status"]) == ("product", "http", 200)
        assert report["record"] == {"name": "Aqua Filter 1", "price": "€11.50"}
        urls = [link["url"] for link in report["links"]]
        assert urls == [
            site.url("/product/2"),
            site.url("/product/3?utm_source=related"),  # the fragment goes, the query stays
            site.url("/product/product/4"),
        ]
        assert {link["phase"] for link in report["links"]} == {"product"}
        assert api.queue.pending() == 0


async def test_preview_problems_carry_their_path(tmp_path: Path, site: SiteServer) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        broken = workflow(site.base_url)
        broken["phases"][0]["nodes"][0]["fields"]["name"] = "h1[["
        response = await api.client.post(
            "/v1/preview", json={"workflow": broken, "url": site.url("/")}, headers=auth
        )
        assert response.status_code == 422
        paths = [p["path"] for p in response.json()["extra"]["problems"]]
        assert paths and paths[0].startswith("workflow.phases[0].nodes[0].fields.name")

        response = await api.client.post(
            "/v1/preview",
            json={"workflow": workflow(site.base_url), "url": site.url("/"), "phase": "nope"},
            headers=auth,
        )
        assert response.status_code == 422
        assert response.json()["extra"]["problems"][0]["path"] == "phase"

        missing = await api.client.post(
            "/v1/preview",
            json={"workflow": workflow(site.base_url), "url": site.url("/status/404")},
            headers=auth,
        )
        assert missing.status_code == 422
        assert "404" in missing.json()["detail"]
