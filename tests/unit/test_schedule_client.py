"""The Python client's schedule methods against the memory-backed API on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.auth import create_key
from tests.api.memory_app import memory_services, served
from tests.api.schedule_app import WORKFLOW
from trawl.client import Client, NotFound, ScheduleOut, Unprocessable


async def test_create_list_edit_pause_resume_and_delete(tmp_path: Path) -> None:
    services = memory_services(tmp_path)
    async with served(services) as base:
        key = await create_key(services.ports.state, "acme")
        async with Client(base, key, timeout=10) as client:
            await client.put_workflow(WORKFLOW)
            with pytest.raises(Unprocessable) as bad:
                await client.create_schedule("shop", "*/5 * * *")
            assert [p.path for p in bad.value.problems] == ["cron"]

            created = await client.create_schedule(
                "shop", "0 6 * * *", timezone="Europe/Paris", set=["max_pages=5"]
            )
            assert isinstance(created, ScheduleOut)
            assert (created.cron, created.timezone, created.set) == (
                "0 6 * * *",
                "Europe/Paris",
                ["max_pages=5"],
            )
            assert created.next_run_at is not None
            assert [s.id for s in await client.list_schedules()] == [created.id]

            paused = await client.pause_schedule(created.id)
            assert (paused.enabled, paused.next_run_at) == (False, None)
            resumed = await client.resume_schedule(created.id)
            assert resumed.enabled and resumed.next_run_at is not None
            edited = await client.update_schedule(created.id, cron="30 7 * * 1", missed="run_once")
            assert (edited.cron, edited.missed) == ("30 7 * * 1", "run_once")
            got = await client.get_schedule(created.id)
            assert (got.cron, got.history) == ("30 7 * * 1", [])

            await client.delete_schedule(created.id)
            with pytest.raises(NotFound, match="no schedule"):
                await client.get_schedule(created.id)
