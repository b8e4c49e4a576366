"""The operator console in real Chromium: a person enters a key, sees the executions, picks
one and watches it run to completed, with the funnel per phase and marker.

The orchestrator app is served by uvicorn over the memory adapters, and a worker pipeline in
the same process crawls the local test site from the same queue, as `trawl run` does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from backends.clock import SystemClock
from orchestrator import Services
from orchestrator.auth import create_key
from tests.api.memory_app import memory_services, served
from tests.site import SiteServer
from trawl.embedded import open_fetchers
from trawl.settings import Settings
from worker.assemble import assemble
from worker.fetchers.browser import CHROMIUM_ARGS
from workflows import load_workflow

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(120)]

SIZE = 31


def workflow_yaml(start: str) -> str:
    return f"""
name: graph-crawl
start_urls: ["{start}"]
engine: http
max_depth: 4
politeness: {{requests_per_second: 40, burst: 4, respect_robots_txt: false}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
"""


@contextlib.asynccontextmanager
async def worker(services: Services, yaml_text: str) -> AsyncIterator[None]:
    """A worker pipeline over the API's memory ports."""
    workflow = load_workflow(yaml_text)
    stop = asyncio.Event()
    async with open_fetchers(workflow, Settings()) as (fetchers, robots):
        parts = assemble(
            services.ports,
            fetchers=fetchers,
            robots=robots,
            clock=SystemClock(),
            concurrency=4,
            worker_id="console-test",
        )
        running = asyncio.create_task(parts.pipeline.run(stop))
        try:
            yield
        finally:
            stop.set()
            await running


async def test_the_console_shows_an_execution_run_to_completion(
    tmp_path: Path, site: SiteServer, chromium_path: str
) -> None:
    token = uuid.uuid4().hex[:8]
    yaml_text = workflow_yaml(site.url(f"/graph/{token}/{SIZE}/0?delay_ms=40"))
    services = memory_services(tmp_path)
    key = await create_key(services.ports.state, "acme")
    auth = {"Authorization": f"Bearer {key}"}
    async with served(services) as base:
        async with aiohttp.ClientSession(headers=auth) as http:
            headers = {"Content-Type": "application/yaml"}
            async with http.post(f"{base}/v1/workflows", data=yaml_text, headers=headers) as r:
                assert r.status == 201, await r.text()
            async with http.post(f"{base}/v1/workflows/graph-crawl/executions") as r:
                assert r.status == 202, await r.text()
                execution_id = (await r.json())["id"]

        async with async_playwright() as pw, worker(services, yaml_text):
            browser = await pw.chromium.launch(
                executable_path=chromium_path, args=list(CHROMIUM_ARGS)
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/console")
                await expect(page.locator("tbody#executions")).to_contain_text("Enter an API key")
                await page.fill("#key", key)
                await page.click("text=Use key")
                row = page.locator(f"tr.execution[data-id='{execution_id}']")
                await expect(row).to_contain_text("graph-crawl v1")
                await row.click()
                await expect(page.locator("#detail-title")).to_contain_text(execution_id)
                status = page.locator("#detail-status")
                await expect(status).to_have_text("completed", timeout=60_000)
                await expect(page.locator("#summary")).to_contain_text(f"{SIZE}/{SIZE} pages")
                await expect(page.locator("#summary")).to_contain_text(f"{SIZE} records")
                funnel = page.locator("#funnel tr")
                await expect(funnel).to_have_count(1)
                cells = await funnel.first.locator("td").all_inner_texts()
                # phase, marker, discovered, in scope, new, fetched, extracted, (bar)
                assert cells[:2] == ["page", "—"]
                discovered, in_scope, new, fetched, extracted = map(int, cells[2:7])
                assert (new, fetched, extracted) == (SIZE - 1, SIZE, SIZE)
                assert discovered >= in_scope >= new
                await expect(page.locator("#errors")).to_contain_text("none")
                await expect(row.locator(".status")).to_have_text("completed")
            finally:
                await browser.close()
