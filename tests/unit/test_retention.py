"""Row retention over the memory and SQLite stores: a pass prunes every execution that
ended before the cutoff, page by page; a dry run changes nothing; the orchestrator's job runs
after its first delay and then every interval, one instance at a time, and rides out a
failed round; the settings and ``trawl prune`` refuse what makes no sense, in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from backends.clock import FakeClock
from backends.errors import RetryableError
from backends.memory import MemoryStateStore
from backends.sqlite import SqliteDb, SqliteStateStore
from backends.state import OutputObject, PruneCounts, StateStore
from orchestrator.retention import FIRST_DELAY_S, RetentionJob, retention_lifespan
from orchestrator.services import Limits
from tests.api.schedule_app import clocked_services
from tests.contract.state_data import execution, result
from trawl.cli import main
from trawl.settings import load_settings
from worker import retention
from worker.retention import describe, prune

DAY_S = 24 * 3600.0
PART = OutputObject(path="x/parts/p/part-w1-000001.jsonl", size_bytes=1, records=1, kind="part")


async def ended(store: StateStore, execution_id: str, keys: int = 2) -> None:
    """A completed execution with ``keys`` finished tasks and one part file."""
    await store.create_execution(execution(execution_id))
    await store.transition(execution_id, "running", from_statuses=["pending"])
    names = [f"http://shop.test/{execution_id}/{n}" for n in range(keys)]
    await store.add_tasks(execution_id, names)
    await store.finish_tasks(execution_id, [result(name) for name in names])
    await store.add_output(execution_id, PART)
    await store.transition(execution_id, "completed", from_statuses=["running"])


async def eventually(condition: Callable[[], Awaitable[bool]], deadline_s: float = 5.0) -> None:
    """Until ``await condition()`` is true, at most ``deadline_s`` of real time."""
    async with asyncio.timeout(deadline_s):
        while not await condition():  # noqa: ASYNC110 - the store offers no event to wait on
            await asyncio.sleep(0.01)


async def test_a_pass_prunes_every_old_execution_page_by_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retention, "PAGE", 2)
    clock = FakeClock()
    store = MemoryStateStore(clock)
    for n in range(5):
        await ended(store, f"ex-{n}", keys=n + 1)
    await store.claim("login:ex-0:1", "w1", 60)
    clock.advance(20 * DAY_S)
    await ended(store, "ex-recent")
    seen: list[tuple[str, int]] = []

    total = await prune(
        store, now=clock.wall(), days=10, each=lambda e, c: seen.append((e, c.tasks))
    )
    assert seen == [("ex-0", 1), ("ex-1", 2), ("ex-2", 3), ("ex-3", 4), ("ex-4", 5)]
    assert total == PruneCounts(executions=5, tasks=15, part_outputs=5, claims=1)
    assert describe(total) == (
        "5 execution(s): 15 task row(s), 5 part-file entr(ies), 0 login session(s), "
        "0 settled webhook call(s); 1 expired claim(s)"
    )
    assert (await store.progress("ex-4")).published == 5
    assert await store.outputs("ex-recent") == [PART]
    assert await prune(store, now=clock.wall(), days=10) == PruneCounts()


async def test_a_dry_run_counts_and_changes_nothing() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    await ended(store, "ex-old", keys=3)
    clock.advance(20 * DAY_S)
    dry = await prune(store, now=clock.wall(), days=10, dry_run=True)
    assert dry == PruneCounts(executions=1, tasks=3, part_outputs=1)
    assert await store.outputs("ex-old") == [PART]
    assert await prune(store, now=clock.wall(), days=10) == dry


def test_a_retention_shorter_than_a_day_is_refused() -> None:
    with pytest.raises(ValueError, match="a retention of 0 days prunes nothing"):
        retention.cutoff(FakeClock().wall(), 0)
    with pytest.raises(ValueError, match="at least 1 day"):
        RetentionJob(MemoryStateStore(), FakeClock(), days=0)


async def test_one_instance_prunes_per_interval_and_another_takes_over() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    await ended(store, "ex-1")
    clock.advance(20 * DAY_S)
    first = RetentionJob(store, clock, days=10, owner="orchestrator-a", interval_s=3600)
    second = RetentionJob(store, clock, days=10, owner="orchestrator-b", interval_s=3600)
    assert await first.round() == PruneCounts(executions=1, tasks=2, part_outputs=1)
    assert await second.round() is None  # a holds the claim for the hour
    await ended(store, "ex-2")
    clock.advance(20 * DAY_S)  # a stopped: its claim lapsed, b takes the turn
    assert await second.round() == PruneCounts(executions=1, tasks=2, part_outputs=1)
    assert await first.round() is None


class FlakyStore(MemoryStateStore):
    """Postgres away for the first round."""

    failures = 1

    async def prunable_executions(self, **kwargs: object) -> list[str]:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise RetryableError("postgres did not answer", error_class="connection")
        return await super().prunable_executions(**kwargs)  # type: ignore[arg-type]


async def test_the_job_waits_its_first_delay_then_runs_every_interval_through_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    await ended(store, "ex-1")
    clock.advance(20 * DAY_S)
    job = RetentionJob(store, clock, days=10, interval_s=3600, first_delay_s=300)
    job.start()
    try:
        await eventually(lambda: _parked(clock))
        await clock.run_for(299)
        assert await store.outputs("ex-1") == [PART]  # not before its first delay
        await clock.run_for(2)
        await eventually(lambda: _warned(caplog))
        assert "retention round failed: postgres did not answer" in caplog.text
        assert await store.outputs("ex-1") == [PART]  # that round failed
        await clock.run_for(3600)
        await eventually(lambda: _pruned(store, "ex-1"))
        assert (await store.progress("ex-1")).published == 2
    finally:
        await job.stop()


async def _parked(clock: FakeClock) -> bool:
    return clock.sleepers > 0


async def _warned(caplog: pytest.LogCaptureFixture) -> bool:
    return "retention round failed" in caplog.text


async def _pruned(store: StateStore, execution_id: str) -> bool:
    return await store.outputs(execution_id) == []


@pytest.mark.parametrize("days", [5, 0])
async def test_the_app_runs_the_job_when_its_limits_ask(tmp_path: Path, days: int) -> None:
    clock = FakeClock()
    services = clocked_services(tmp_path, clock, Limits(retention_days=days))
    store = services.ports.state
    await ended(store, "ex-1")
    clock.advance(10 * DAY_S)
    async with retention_lifespan(services)(None):
        if days:
            await eventually(lambda: _parked(clock))
        await clock.run_for(FIRST_DELAY_S + 1)
        if days:
            await eventually(lambda: _pruned(store, "ex-1"))
        else:
            assert clock.sleepers == 0  # no job in this process
            assert await store.outputs("ex-1") == [PART]


async def test_a_pruned_sqlite_execution_stays_pruned_when_reopened(tmp_path: Path) -> None:
    clock = FakeClock()
    db = SqliteDb(tmp_path / "state.db")
    store = await SqliteStateStore.open(db, clock)
    await ended(store, "ex-1", keys=3)
    clock.advance(20 * DAY_S)
    cutoff = clock.wall() - timedelta(days=10)
    counts = await store.prune_execution("ex-1", ended_before=cutoff)
    assert counts == PruneCounts(executions=1, tasks=3, part_outputs=1)
    await store.close()
    db.close()

    db = SqliteDb(tmp_path / "state.db")
    reopened = await SqliteStateStore.open(db, clock)
    try:
        assert await reopened.outputs("ex-1") == []
        assert (await reopened.progress("ex-1")).published == 3
        assert await reopened.prunable_executions(ended_before=cutoff) == []
    finally:
        await reopened.close()
        db.close()


def test_the_retention_setting_is_checked_in_one_line() -> None:
    assert load_settings({}).retention_days == 90
    assert load_settings({"TRAWL_RETENTION_DAYS": "0"}).retention_days == 0
    with pytest.raises(ValueError, match=r"TRAWL_RETENTION_DAYS must be 0 \(keep everything\)"):
        load_settings({"TRAWL_RETENTION_DAYS": "-1"})
    with pytest.raises(ValueError, match="TRAWL_RETENTION_DAYS must be an integer"):
        load_settings({"TRAWL_RETENTION_DAYS": "a month"})


def test_trawl_prune_refuses_what_makes_no_sense_before_any_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("TRAWL_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    assert main(["prune", "--days", "0"]) == 2
    assert capsys.readouterr().err == "trawl: --days must be 1 or more, not 0\n"
    monkeypatch.setenv("TRAWL_RETENTION_DAYS", "0")
    assert main(["prune", "--dry-run"]) == 0
    assert capsys.readouterr().out == (
        "TRAWL_RETENTION_DAYS is 0: every row is kept, nothing pruned "
        "(--days N prunes once all the same)\n"
    )
    monkeypatch.setenv("TRAWL_RETENTION_DAYS", "-3")
    assert main(["prune"]) == 2
    assert "TRAWL_RETENTION_DAYS must be 0 (keep everything)" in capsys.readouterr().err
