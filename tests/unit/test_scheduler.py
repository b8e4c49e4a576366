"""Schedules fire at their time on a test clock: the memory-backed API, a FakeClock, and the
scheduler's rounds run by hand (and once as its own loop). What a user sees is checked: the
executions the API lists, and each schedule's history, next run and counts."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backends.clock import FakeClock
from backends.errors import RetryableError
from backends.memory import MemoryStateStore
from backends.state import Schedule
from orchestrator.schedule_fire import fire_execution_id, start_fire
from orchestrator.scheduler import Scheduler
from orchestrator.services import Limits
from tests.api.schedule_app import ScheduleApi, clocked_services, schedule_api

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # 01:00 in Paris


def utc(hour: int, minute: int, second: int = 0, *, day: datetime = T0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second)


def z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def executions(api: ScheduleApi) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await api.get("/v1/executions")
    return found


async def test_a_schedule_fires_at_its_time_and_skips_while_its_last_run_runs(
    tmp_path: Path,
) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        created = await api.create(
            {
                "workflow": "shop",
                "cron": "*/5 * * * *",
                "timezone": "Europe/Paris",
                "set": ["max_pages=5"],
            }
        )
        assert created["next_run_at"] == z(utc(0, 5))
        assert (created["overlap"], created["missed"], created["enabled"]) == ("skip", "skip", True)
        path = f"/v1/schedules/{created['id']}"

        api.at(utc(0, 4, 59))  # just before: nothing
        assert await api.scheduler.tick() == []
        assert await executions(api) == []

        api.at(utc(0, 5, 2))  # just past: exactly one execution
        await api.scheduler.tick()
        assert await api.scheduler.tick() == []  # handled once
        [started] = await executions(api)
        assert (started["workflow"], started["status"]) == ("shop", "running")
        execution = await api.get(f"/v1/executions/{started['id']}")
        assert execution["overrides"] == ["max_pages=5"]
        schedule = await api.get(path)
        assert schedule["history"] == [
            {
                "scheduled_for": z(utc(0, 5)),
                "at": z(utc(0, 5, 2)),
                "outcome": "started",
                "execution_id": started["id"],
                "reason": None,
                "count": 1,
            }
        ]
        assert (schedule["last_outcome"], schedule["last_execution_id"]) == (
            "started",
            started["id"],
        )
        assert (schedule["last_run_at"], schedule["next_run_at"]) == (
            z(utc(0, 5, 2)),
            z(utc(0, 10)),
        )

        api.at(utc(0, 10, 1))  # its execution still runs: this fire is skipped
        await api.scheduler.tick()
        assert len(await executions(api)) == 1
        schedule = await api.get(path)
        skipped = schedule["history"][0]
        assert skipped["outcome"] == "skipped_overlap"
        assert skipped["reason"] == f"execution {started['id']} of the last fire is still running"
        assert schedule["counts"] == {"started": 1, "skipped_overlap": 1}

        cancelled = await api.client.post(
            f"/v1/executions/{started['id']}/cancel", headers=api.auth
        )
        assert cancelled.status_code == 202, cancelled.text
        api.at(utc(0, 15, 1))  # it has ended: the next fire starts a new one
        await api.scheduler.tick()
        newest = await executions(api)
        assert len(newest) == 2
        schedule = await api.get(path)
        assert schedule["last_execution_id"] == newest[0]["id"] != started["id"]
        assert [f["outcome"] for f in schedule["history"]] == [
            "started",
            "skipped_overlap",
            "started",
        ]


async def test_after_downtime_missed_fires_are_skipped_or_run_once(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        common = {"workflow": "shop", "cron": "*/5 * * * *", "overlap": "allow"}
        skip = await api.create({**common, "missed": "skip"})
        once = await api.create({**common, "missed": "run_once"})
        api.at(utc(0, 5, 1))
        await api.scheduler.tick()
        assert len(await executions(api)) == 2

        api.at(utc(1, 7))  # no scheduler ran for an hour: fires 00:10 to 01:05 passed
        await api.scheduler.tick()
        listed = await executions(api)
        assert len(listed) == 3  # one catch-up, for the run_once schedule only

        skipped = await api.get(f"/v1/schedules/{skip['id']}")
        missed = skipped["history"][0]
        assert (missed["outcome"], missed["count"], missed["execution_id"]) == ("missed", 12, None)
        assert missed["scheduled_for"] == z(utc(0, 10))
        assert missed["reason"] == (
            "12 fire(s) due from 2026-01-01 00:10Z to 2026-01-01 01:05Z missed: no scheduler "
            "ran at its time; missed-run policy skip"
        )
        assert skipped["counts"] == {"started": 1, "missed": 12}
        assert skipped["next_run_at"] == z(utc(1, 10))

        caught_up = await api.get(f"/v1/schedules/{once['id']}")
        run, earlier = caught_up["history"][:2]
        assert (earlier["outcome"], earlier["count"]) == ("missed", 11)
        assert earlier["reason"] == (
            "11 fire(s) due from 2026-01-01 00:10Z to 2026-01-01 01:00Z missed: no scheduler "
            "ran at their time; missed-run policy run_once runs the latest"
        )
        assert (run["outcome"], run["scheduled_for"]) == ("started", z(utc(1, 5)))
        assert run["reason"] == "catch-up run 120 s late (missed-run policy run_once)"
        assert run["execution_id"] == listed[0]["id"]
        assert caught_up["counts"] == {"started": 2, "missed": 11}
        assert caught_up["next_run_at"] == z(utc(1, 10))


async def test_a_time_that_daylight_saving_skips_fires_at_the_first_minute_after(
    tmp_path: Path,
) -> None:
    night = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # Paris springs forward at 02:00 local
    async with schedule_api(tmp_path, wall_start=night) as api:
        await api.post_workflow()
        created = await api.create(
            {"workflow": "shop", "cron": "30 2 * * *", "timezone": "Europe/Paris"}
        )
        sunday = datetime(2026, 3, 29, tzinfo=UTC)
        assert created["next_run_at"] == z(utc(1, 0, day=sunday))  # 03:00 CEST
        api.at(utc(1, 0, 3, day=sunday))
        await api.scheduler.tick()
        assert len(await executions(api)) == 1
        schedule = await api.get(f"/v1/schedules/{created['id']}")
        assert schedule["next_run_at"] == z(utc(0, 30, day=sunday + timedelta(days=1)))


async def test_a_fire_that_cannot_start_says_why_and_the_schedule_goes_on(
    tmp_path: Path,
) -> None:
    limits = Limits(max_running_executions=1)
    async with schedule_api(tmp_path, wall_start=T0, limits=limits) as api:
        await api.post_workflow()
        created = await api.create({"workflow": "shop", "cron": "0 * * * *", "overlap": "allow"})
        path = f"/v1/schedules/{created['id']}"
        started = await api.client.post("/v1/workflows/shop/executions", headers=api.auth)
        assert started.status_code == 202, started.text
        api.at(utc(1, 0, 1))
        await api.scheduler.tick()
        refused = (await api.get(path))["history"][0]
        assert refused["outcome"] == "failed_to_start"
        assert refused["reason"] == (
            "1 executions are already running for this tenant, the most it may have "
            "(TRAWL_MAX_RUNNING_EXECUTIONS)"
        )
        await api.client.post(f"/v1/executions/{started.json()['id']}/cancel", headers=api.auth)
        deleted = await api.client.delete("/v1/workflows/shop", headers=api.auth)
        assert deleted.status_code == 204, deleted.text
        api.at(utc(2, 0, 1))
        await api.scheduler.tick()
        schedule = await api.get(path)
        assert schedule["history"][0]["reason"] == "the tenant has no workflow 'shop' any more"
        assert schedule["counts"] == {"failed_to_start": 2}
        assert schedule["next_run_at"] == z(utc(3, 0))


async def test_a_fire_started_by_a_scheduler_that_died_is_not_started_twice(
    tmp_path: Path,
) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        created = await api.create({"workflow": "shop", "cron": "*/5 * * * *"})
        api.at(utc(0, 5, 1))
        state = api.services.ports.state
        # A scheduler claims it, starts the fire's execution and dies before recording it.
        [claimed] = await state.claim_due_schedules(limit=10, lease_s=30)
        first = await start_fire(api.services, claimed, utc(0, 5))
        assert first.id == fire_execution_id(created["id"], utc(0, 5))
        assert await api.scheduler.tick() == []  # still claimed
        api.clock.advance(31)  # the claim lapsed: another scheduler takes the schedule
        await api.scheduler.tick()
        [only] = await executions(api)
        assert only["id"] == first.id
        history = (await api.get(f"/v1/schedules/{created['id']}"))["history"]
        assert [(f["outcome"], f["execution_id"]) for f in history] == [("started", first.id)]


async def wait_until(condition: Any, deadline_s: float = 10.0) -> None:
    """Until ``await condition()`` is true, at most ``deadline_s`` of real time."""
    async with asyncio.timeout(deadline_s):
        while not await condition():  # noqa: ASYNC110 - the clock and the store offer no event
            await asyncio.sleep(0.01)


async def test_the_loop_fires_on_the_clock_and_readyz_says_when_it_stopped(
    tmp_path: Path,
) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        await api.create({"workflow": "shop", "cron": "*/5 * * * *"})
        loop = api.scheduler
        api.services.checks["scheduler"] = loop.check
        loop.start()
        try:
            ready = await api.client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "checked": ["scheduler"], "down": {}}

            async def one_execution() -> bool:
                return len(await executions(api)) == 1

            await wait_until(lambda: _parked(api))
            api.at(utc(0, 5, 3))  # wakes the loop's sleep: its next round fires
            await wait_until(one_execution)
        finally:
            await loop.stop()
        down = await api.client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["down"] == {"scheduler": "unavailable (scheduler_stopped)"}


async def _parked(api: ScheduleApi) -> bool:
    return api.clock.sleepers > 0


class DownSchedules(MemoryStateStore):
    async def claim_due_schedules(self, *, limit: int, lease_s: float) -> list[Schedule]:
        raise RetryableError("postgres did not answer", error_class="connection")


async def test_readyz_is_503_while_every_round_fails(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        api.services.ports = dataclasses.replace(api.services.ports, state=DownSchedules(api.clock))
        loop = Scheduler(api.services, tick_s=5.0)
        api.services.checks["scheduler"] = loop.check
        loop.start()
        try:
            await wait_until(lambda: _parked(api))
            assert (await api.client.get("/readyz")).status_code == 200
            api.clock.advance(61)
            await wait_until(lambda: _parked(api))
            down = await api.client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["down"] == {"scheduler": "unavailable (scheduler_failing)"}
        finally:
            await loop.stop()


async def test_the_app_runs_its_scheduler_when_its_limits_ask(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0, limits=Limits(scheduler_tick_s=30.0)) as api:
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checked"] == ["scheduler"]


@pytest.mark.parametrize("tick_s", [0.0, -1.0])
def test_a_scheduler_needs_a_tick(tmp_path: Path, tick_s: float) -> None:
    with pytest.raises(ValueError, match="tick must be above 0"):
        Scheduler(clocked_services(tmp_path, FakeClock()), tick_s=tick_s)
