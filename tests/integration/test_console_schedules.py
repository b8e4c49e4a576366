"""The console's Schedules section in real Chromium: a person sees the tenant's schedules
with their next run and last outcome, pauses and resumes one, and gives one a new cron
expression; a bad one shows the field and why, and changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from orchestrator.auth import create_key
from tests.api.memory_app import memory_services, served
from tests.api.schedule_app import WORKFLOW
from worker.fetchers.browser import CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(120)]


async def test_pause_resume_and_edit_a_schedule_in_the_console(
    tmp_path: Path, chromium_path: str
) -> None:
    services = memory_services(tmp_path)
    key = await create_key(services.ports.state, "acme")
    auth = {"Authorization": f"Bearer {key}"}
    async with served(services) as base, aiohttp.ClientSession(headers=auth) as http:
        yaml = {"Content-Type": "application/yaml"}
        async with http.post(f"{base}/v1/workflows", data=WORKFLOW, headers=yaml) as r:
            assert r.status == 201, await r.text()
        body = {"workflow": "shop", "cron": "0 6 * * *", "timezone": "Europe/Paris"}
        async with http.post(f"{base}/v1/schedules", json=body) as r:
            assert r.status == 201, await r.text()
            schedule_id = (await r.json())["id"]

        async def stored() -> dict[str, object]:
            async with http.get(f"{base}/v1/schedules/{schedule_id}") as r:
                found: dict[str, object] = await r.json()
                return found

        async def stored_soon(key: str, value: object, deadline_s: float = 10.0) -> None:
            """The console's PATCH lands after the page shows what was typed: wait for it."""
            loop = asyncio.get_running_loop()
            until = loop.time() + deadline_s
            while (found := (await stored())[key]) != value:
                assert loop.time() < until, f"{key} is {found!r}, not {value!r}"
                await asyncio.sleep(0.05)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium_path, args=list(CHROMIUM_ARGS)
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/console")
                await page.fill("#key", key)
                await page.click("text=Use key")
                row = page.locator(f"tr.schedule[data-id='{schedule_id}']")
                await expect(row).to_contain_text("shop")
                await expect(row).to_contain_text("Europe/Paris")
                await expect(row.locator(".state")).to_have_text("enabled")
                await expect(row.locator(".next")).not_to_have_text("—")

                await row.locator("button.toggle").click()
                await expect(row.locator(".state")).to_have_text("paused")
                await expect(row.locator(".next")).to_have_text("—")
                await stored_soon("enabled", False)
                await row.locator("button.toggle").click()
                await expect(row.locator(".state")).to_have_text("enabled")

                await row.locator("input.cron").fill("0 7 * * MON-FRI")
                await row.locator("text=Save").click()
                await stored_soon("cron", "0 7 * * MON-FRI")
                await expect(row.locator("input.cron")).to_have_value("0 7 * * MON-FRI")

                await row.locator("input.cron").fill("0 25 * * *")
                await row.locator("text=Save").click()
                await expect(page.locator("#error")).to_contain_text(
                    "422: cron: the hour field '25' is not valid"
                )
                assert (await stored())["cron"] == "0 7 * * MON-FRI"
            finally:
                await browser.close()
