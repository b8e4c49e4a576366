"""``/v1/schedules`` over the memory adapters: what a tenant can create, read, edit and
delete; each bad field named; bounds; tenancy; the request schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.services import Limits
from tests.api.schedule_app import ScheduleApi, schedule_api

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_5 = {"workflow": "shop", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}


async def problems(
    api: ScheduleApi, body: dict[str, Any], method: str = "POST", path: str = "/v1/schedules"
) -> list[dict[str, str]]:
    response = await api.client.request(method, path, json=body, headers=api.auth)
    assert response.status_code == 422, response.text
    found: list[dict[str, str]] = response.json()["extra"]["problems"]
    return found


async def test_each_bad_field_is_a_422_that_names_it(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        assert await problems(api, {**EVERY_5, "cron": "99 * * * *"}) == [
            {
                "path": "cron",
                "message": "the minute field '99' is not valid: it takes 0-59, *, a range a-b, "
                "a list a,b or a step */n",
            }
        ]
        assert await problems(api, {**EVERY_5, "cron": "0 0 31 2 *"}) == [
            {
                "path": "cron",
                "message": "the day-of-month field '31' names no day that the month field '2' has",
            }
        ]
        [six] = await problems(api, {**EVERY_5, "cron": "0 */5 * * * *"})
        assert six["path"] == "cron"
        assert six["message"].startswith("has 6 field(s); a cron expression has 5: minute hour")
        assert await problems(api, {**EVERY_5, "timezone": "Mars/Olympus_Mons"}) == [
            {
                "path": "timezone",
                "message": "'Mars/Olympus_Mons' is not an IANA time zone name (e.g. Europe/Paris)",
            }
        ]
        assert await problems(api, {**EVERY_5, "workflow": "nope"}) == [
            {"path": "workflow", "message": "no workflow 'nope' (POST /v1/workflows)"}
        ]
        assert await problems(api, {**EVERY_5, "workflow_version": 9}) == [
            {"path": "workflow_version", "message": "workflow 'shop' has no such version"}
        ]
        [override] = await problems(api, {**EVERY_5, "set": ["max_pages=-3"]})
        assert override["path"] == "max_pages"
        # Several at once, each with its field.
        both = await problems(api, {**EVERY_5, "cron": "* 25 * * *", "timezone": "Nowhere"})
        assert [p["path"] for p in both] == ["cron", "timezone"]
        assert both[0]["message"].startswith("the hour field '25' is not valid")
        unknown = await api.client.post(
            "/v1/schedules", json={**EVERY_5, "crontab": "x"}, headers=api.auth
        )
        assert unknown.status_code == 400
        assert "crontab" in unknown.text
        assert (await api.get("/v1/schedules")) == []


async def test_the_deployment_bounds_how_often_and_how_many(tmp_path: Path) -> None:
    limits = Limits(max_schedules=2, schedule_min_interval_s=600)
    async with schedule_api(tmp_path, wall_start=T0, limits=limits) as api:
        await api.post_workflow()
        assert await problems(api, EVERY_5) == [
            {
                "path": "cron",
                "message": "fires every 300 s at its most frequent; this deployment allows one "
                "fire per 600 s at most (TRAWL_SCHEDULE_MIN_INTERVAL_S)",
            }
        ]
        hourly = {**EVERY_5, "cron": "0 * * * *"}
        await api.create(hourly)
        await api.create(hourly)
        third = await api.client.post("/v1/schedules", json=hourly, headers=api.auth)
        assert third.status_code == 409
        assert third.json()["detail"] == (
            "this tenant already has 2 schedules, the most this deployment allows "
            "(TRAWL_MAX_SCHEDULES); delete one first"
        )
        # The cap is per tenant.
        other = await api.key("globex")
        await api.post_workflow(other)
        await api.create(hourly, other)


async def test_pause_resume_and_edit(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        created = await api.create(EVERY_5)
        path = f"/v1/schedules/{created['id']}"
        assert created["next_run_at"] == "2026-01-01T00:05:00Z"

        paused = await api.client.patch(path, json={"enabled": False}, headers=api.auth)
        assert paused.status_code == 200, paused.text
        assert (paused.json()["enabled"], paused.json()["next_run_at"]) == (False, None)
        api.at(datetime(2026, 1, 1, 0, 12, tzinfo=UTC))
        assert await api.scheduler.tick() == []  # paused: nothing fires

        resumed = await api.client.patch(path, json={"enabled": True}, headers=api.auth)
        assert resumed.json()["next_run_at"] == "2026-01-01T00:15:00Z"  # from now on

        body = {"cron": "0 9 * * MON-FRI", "set": ["max_pages=3"], "missed": "run_once"}
        edited = await api.client.patch(path, json=body, headers=api.auth)
        assert edited.status_code == 200, edited.text
        out = edited.json()
        assert (out["cron"], out["set"], out["missed"]) == (
            "0 9 * * MON-FRI",
            ["max_pages=3"],
            "run_once",
        )
        assert out["next_run_at"] == "2026-01-01T08:00:00Z"  # Thursday, 09:00 in Paris
        assert out["timezone"] == "Europe/Paris"

        # A bad edit changes nothing.
        assert await problems(api, {"cron": "0 9 * * FUNDAY"}, "PATCH", path) == [
            {
                "path": "cron",
                "message": "the day-of-week field 'FUNDAY' is not valid: it takes 0-7 or "
                "SUN-SAT, *, a range a-b, a list a,b or a step */n",
            }
        ]
        assert (await api.get(path))["cron"] == "0 9 * * MON-FRI"

        deleted = await api.client.delete(path, headers=api.auth)
        assert deleted.status_code == 204
        gone = await api.client.get(path, headers=api.auth)
        assert gone.status_code == 404
        assert gone.json()["detail"] == f"no schedule {created['id']!r}"


async def test_another_tenants_schedule_is_a_404(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        await api.post_workflow()
        mine = await api.create(EVERY_5)
        other = await api.key("globex")
        path = f"/v1/schedules/{mine['id']}"
        for method, body in (("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)):
            response = await api.client.request(method, path, json=body, headers=other)
            assert response.status_code == 404, (method, response.text)
        listed = await api.client.get("/v1/schedules", headers=other)
        assert listed.json() == []
        assert [s["id"] for s in await api.get("/v1/schedules")] == [mine["id"]]
        # Another tenant's workflow of the same name is not one it can schedule.
        response = await api.client.post("/v1/schedules", json=EVERY_5, headers=other)
        assert response.status_code == 422
        assert response.json()["extra"]["problems"][0]["path"] == "workflow"


async def test_the_request_schemas_are_strict(tmp_path: Path) -> None:
    async with schedule_api(tmp_path, wall_start=T0) as api:
        document = (await api.client.get("/schema/openapi.json")).json()
        schemas = document["components"]["schemas"]
        for name in ("ScheduleCreate", "ScheduleUpdate"):
            assert schemas[name]["additionalProperties"] is False, name
        create = schemas["ScheduleCreate"]
        assert set(create["required"]) == {"cron", "workflow"}
        pattern = create["properties"]["set"]["items"]["pattern"]
        assert re.search(pattern, "max_pages=3") and not re.search(pattern, "max_pages")
        assert not schemas["ScheduleUpdate"].get("required")  # every field optional
        paths = document["paths"]
        assert set(paths["/v1/schedules"]) >= {"get", "post"}
        assert set(paths["/v1/schedules/{schedule_id}"]) >= {"get", "patch", "delete"}
