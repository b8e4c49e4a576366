"""``trawl schedules``: the commands over the memory-backed services (the command line opens
the deployment's backends, then does exactly this), as an operator reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from backends.clock import FakeClock
from orchestrator import Services
from orchestrator.scheduler import Scheduler
from tests.api.memory_app import close_admission
from tests.api.schedule_app import WORKFLOW, clocked_services
from trawl.cli import build_parser
from trawl.cli_common import CommandError
from trawl.schedule_commands import run_schedules
from worker.start import store_workflow
from workflows import WorkflowInvalid, load_workflow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def trawl(services: Services, *argv: str) -> int:
    return await run_schedules(services, build_parser().parse_args(["schedules", *argv]))


async def test_create_list_show_edit_pause_and_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(wall_start=T0)
    services = clocked_services(tmp_path, clock)
    try:
        await store_workflow(services.ports.state, "acme", load_workflow(WORKFLOW))
        with pytest.raises(WorkflowInvalid) as invalid:
            await trawl(services, "create", "shop", "--tenant", "acme", "--cron", "61 * * * *")
        assert [p.path for p in invalid.value.problems] == ["cron"]

        code = await trawl(
            services,
            *("create", "shop", "--tenant", "acme", "--cron", "*/15 * * * *"),
            *("--tz", "Europe/Paris", "--set", "max_pages=5", "--missed", "run_once"),
        )
        out, err = capsys.readouterr()
        schedule_id = out.strip()
        assert code == 0 and len(schedule_id) == 32
        assert err.strip() == (f"schedule {schedule_id} of 'shop': next run 2026-01-01 00:15:00Z")

        await trawl(services, "list", "--tenant", "acme")
        out, err = capsys.readouterr()
        header, row = out.splitlines()
        assert header.split() == [
            "ID",
            "WORKFLOW",
            "CRON",
            "TIMEZONE",
            "STATE",
            "NEXT",
            "RUN",
            "LAST",
            "RUN",
            "OUTCOME",
        ]
        assert row.split() == [
            schedule_id,
            "shop",
            "*/15",
            "*",
            "*",
            "*",
            "*",
            "Europe/Paris",
            "enabled",
            "2026-01-01",
            "00:15:00Z",
            "-",
            "-",
        ]
        assert err.strip() == "1 schedule(s)"
        await trawl(services, "list", "--tenant", "globex")
        assert capsys.readouterr().err.strip() == "0 schedule(s)"

        clock.advance(15 * 60 + 2)
        await Scheduler(services, tick_s=5).tick()
        await trawl(services, "show", schedule_id, "--tenant", "acme")
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == (
            f"schedule {schedule_id}: shop (latest version), */15 * * * * in Europe/Paris"
        )
        assert lines[1] == "state: enabled; next run 2026-01-01 00:30:00Z"
        assert lines[2] == "policies: overlap skip, missed run_once; overrides: ['max_pages=5']"
        assert lines[3] == "fires: started 1"
        assert lines[4].startswith("  2026-01-01 00:15:00Z started ")

        await trawl(services, "pause", schedule_id, "--tenant", "acme")
        assert capsys.readouterr().out.strip() == (
            f"schedule {schedule_id}: */15 * * * * (Europe/Paris), paused"
        )
        await trawl(services, "resume", schedule_id, "--tenant", "acme")
        assert capsys.readouterr().out.strip().endswith("next run 2026-01-01 00:30:00Z")
        await trawl(services, "edit", schedule_id, "--tenant", "acme", "--cron", "0 6 * * *")
        assert capsys.readouterr().out.strip() == (
            f"schedule {schedule_id}: 0 6 * * * (Europe/Paris), next run 2026-01-01 05:00:00Z"
        )
        with pytest.raises(CommandError, match="nothing to change"):
            await trawl(services, "edit", schedule_id, "--tenant", "acme")
        with pytest.raises(CommandError, match=f"no schedule {schedule_id} of tenant 'globex'"):
            await trawl(services, "delete", schedule_id, "--tenant", "globex")
        await trawl(services, "delete", schedule_id, "--tenant", "acme")
        assert capsys.readouterr().out.strip() == f"deleted schedule {schedule_id}"
        assert await services.ports.state.list_schedules("acme") == []
    finally:
        await close_admission(services)
