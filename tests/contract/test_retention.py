"""RetentionStore contract: an execution that ended before the cutoff loses its task rows,
part-file entries, login session and settled webhook call, and keeps what reports read
(status, counts, failures, warnings, export entries); nothing else is touched; a late
finish counts nothing; deletes go in batches and two pruners at once delete each row once;
claims that expired long ago go."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from backends.errors import InvalidInputError
from backends.state import (
    LoginSession,
    OutputObject,
    PruneCounts,
    SessionCookie,
    StateStore,
)
from tests.contract.conftest import Env
from tests.contract.state_data import execution, result

DAY_S = 24 * 3600.0
PART = OutputObject(
    path="ex/parts/product/part-w1-000001.jsonl", size_bytes=10, records=2, kind="part"
)
EXPORT = OutputObject(
    path="ex/export/records/product/0.jsonl.gz", size_bytes=9, records=2, kind="export"
)
SUMMARY = OutputObject(path="ex/export/summary.json", size_bytes=5, records=0, kind="summary")
COOKIE = SessionCookie(name="sid", value="s3cret", domain="shop.test")


async def crawled(
    store: StateStore,
    execution_id: str,
    *,
    keys: int = 3,
    end: str = "completed",
    webhook: str | None = "delivered",
) -> None:
    """An execution as a crawl leaves it: tasks registered and finished (one failed, one
    filtered), part files and an export, a login session, a webhook call, then ended."""
    await store.create_execution(execution(execution_id))
    assert await store.transition(execution_id, "running", from_statuses=["pending"])
    names = [f"http://shop.test/{execution_id}/{n}" for n in range(keys)]
    await store.add_tasks(execution_id, names, payloads=[f'{{"url": "{n}"}}' for n in names])
    outcomes = ["succeeded", "failed", "filtered"]
    await store.finish_tasks(
        execution_id,
        [
            result(
                name,
                outcomes[n % 3],
                error_class="http_404" if n % 3 == 1 else None,
                warnings={"empty_field": 1} if n == 0 else None,
            )
            for n, name in enumerate(names)
        ],
    )
    for output in (PART, EXPORT, SUMMARY):
        await store.add_output(execution_id, output)
    await store.put_session(execution_id, LoginSession(cookies=[COOKIE], generation=1))
    if webhook is not None:
        await store.enqueue_webhook(
            execution_id, tenant="acme", url="https://h.test/", payload="{}"
        )
        if webhook != "pending":
            [call] = await store.claim_webhooks(limit=10, lease_s=30)
            assert call.execution_id == execution_id
            await store.record_webhook_attempt(
                execution_id, attempt=1, delivered=webhook == "delivered", error="refused"
            )
    assert await store.transition(execution_id, end, from_statuses=["running"])  # type: ignore[arg-type]


async def view(store: StateStore, execution_id: str) -> tuple[object, ...]:
    """Everything a report, the API or the console reads of an execution."""
    return (
        await store.get_execution(execution_id),
        await store.progress(execution_id),
        await store.failures(execution_id),
        await store.warning_examples(execution_id),
        [o for o in await store.outputs(execution_id) if o.kind != "part"],
    )


def cutoff(env: Env[StateStore], days: float) -> datetime:
    return env.clock.wall() - timedelta(days=days)


async def test_an_old_execution_loses_its_rows_and_keeps_its_reports(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await crawled(store, "ex-old")
    await state_env.advance(8 * DAY_S)
    await crawled(store, "ex-recent")
    await store.create_execution(execution("ex-running"))
    await store.transition("ex-running", "running", from_statuses=["pending"])
    await store.add_tasks("ex-running", ["http://shop.test/r"])
    await state_env.advance(2 * DAY_S)
    before = {e: await view(store, e) for e in ("ex-old", "ex-recent", "ex-running")}
    recent_outputs = await store.outputs("ex-recent")
    ended_before = cutoff(state_env, 5)  # ex-old ended 10 days ago, ex-recent 2

    assert await store.prunable_executions(ended_before=ended_before) == ["ex-old"]
    expected = PruneCounts(executions=1, tasks=3, part_outputs=1, sessions=1, webhooks=1)
    dry = await store.prune_execution("ex-old", ended_before=ended_before, dry_run=True)
    assert dry == expected
    assert await store.outputs("ex-old") == [EXPORT, SUMMARY, PART]  # nothing deleted
    assert await store.get_session("ex-old") is not None

    assert await store.prune_execution("ex-old", ended_before=ended_before) == expected
    assert {e: await view(store, e) for e in before} == before
    progress = await store.progress("ex-old")
    assert (progress.published, progress.finished, progress.records) == (3, 3, 1)
    assert progress.failures_by_class == {"http_404": 1}
    assert [f.error_class for f in await store.failures("ex-old")] == ["http_404"]
    assert await store.outputs("ex-old") == [EXPORT, SUMMARY]
    assert await store.get_session("ex-old") is None
    assert await store.get_webhook("ex-old") is None
    # The others keep everything.
    assert await store.outputs("ex-recent") == recent_outputs
    assert await store.get_session("ex-recent") is not None
    assert (await store.get_webhook("ex-recent")) is not None
    for other in ("ex-recent", "ex-running"):
        assert await store.prune_execution(other, ended_before=ended_before) == PruneCounts()

    # Pruned once: nothing is left to find, and a second prune finds nothing.
    assert await store.prunable_executions(ended_before=ended_before) == []
    assert await store.prune_execution("ex-old", ended_before=ended_before) == PruneCounts()
    # A task delivered again after its row is gone counts nothing, nor registers anything.
    late = [result("http://shop.test/ex-old/0"), result("http://shop.test/ex-old/new")]
    assert await store.finish_tasks("ex-old", late) == 0
    assert await store.add_tasks("ex-old", ["http://shop.test/ex-old/other"]) == []
    assert await view(store, "ex-old") == before["ex-old"]


async def test_failed_and_cancelled_executions_are_pruned_once_settled(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await crawled(store, "ex-failed", end="failed")
    await crawled(store, "ex-cancelled", end="cancelled")
    await state_env.advance(10 * DAY_S)
    ended_before = cutoff(state_env, 5)
    # A cancel settles when the sweep freezes its counters and writes its export: until
    # then its rows are left alone (freezing it here would keep the export from being made).
    assert await store.prunable_executions(ended_before=ended_before) == ["ex-failed"]
    assert await store.prune_execution("ex-cancelled", ended_before=ended_before) == PruneCounts()
    assert await store.freeze("ex-cancelled")
    assert await store.prunable_executions(ended_before=ended_before) == [
        "ex-cancelled",
        "ex-failed",
    ]
    for execution_id in ("ex-cancelled", "ex-failed"):
        counts = await store.prune_execution(execution_id, ended_before=ended_before)
        assert (counts.executions, counts.tasks) == (1, 3)
        assert (await store.progress(execution_id)).published == 3


async def test_a_webhook_call_still_owed_is_kept(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await crawled(store, "ex-given-up", webhook="failed")
    await crawled(store, "ex-pending", webhook="pending")
    await state_env.advance(10 * DAY_S)
    ended_before = cutoff(state_env, 5)
    pending = await store.prune_execution("ex-pending", ended_before=ended_before)
    assert (pending.executions, pending.webhooks) == (1, 0)
    call = await store.get_webhook("ex-pending")
    assert call is not None and call.status == "pending"
    given_up = await store.prune_execution("ex-given-up", ended_before=ended_before)
    assert (given_up.executions, given_up.webhooks) == (1, 1)
    assert await store.get_webhook("ex-given-up") is None


async def test_rows_go_in_batches_and_two_pruners_delete_each_once(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await crawled(store, "ex-a", keys=25, webhook=None)
    await crawled(store, "ex-b", keys=40, webhook=None)
    await state_env.advance(10 * DAY_S)
    ended_before = cutoff(state_env, 5)
    counts = await store.prune_execution("ex-a", ended_before=ended_before, batch=4)
    assert (counts.tasks, counts.part_outputs) == (25, 1)
    both = await asyncio.gather(
        *(store.prune_execution("ex-b", ended_before=ended_before, batch=3) for _ in range(2))
    )
    assert sum(c.tasks for c in both) == 40
    assert sum(c.part_outputs for c in both) == 1
    assert await store.prunable_executions(ended_before=ended_before) == []
    assert (await store.progress("ex-b")).published == 40
    with pytest.raises(InvalidInputError, match="at least 1 row"):
        await store.prune_execution("ex-a", ended_before=ended_before, batch=0)


async def test_prunable_executions_come_in_pages_by_id(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    for execution_id in ("ex-c", "ex-a", "ex-b"):
        await crawled(store, execution_id, keys=1, webhook=None)
    await state_env.advance(10 * DAY_S)
    ended_before = cutoff(state_env, 5)
    assert await store.prunable_executions(ended_before=ended_before, limit=2) == ["ex-a", "ex-b"]
    assert await store.prunable_executions(ended_before=ended_before, after="ex-b") == ["ex-c"]
    assert await store.prunable_executions(ended_before=ended_before, limit=0) == []


async def test_claims_that_expired_long_ago_are_deleted(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.claim("login:ex-old:1", "w1", 60)
    await state_env.advance(10 * DAY_S)
    assert await store.claim("sweep", "w2", 15)
    assert await store.claim("login:ex-new:1", "w2", 60)
    expired_before = cutoff(state_env, 5)
    assert await store.prune_claims(expired_before=expired_before, dry_run=True) == 1
    assert await store.last_claimed("login:ex-old:1") is not None
    assert await store.prune_claims(expired_before=expired_before, batch=1) == 1
    assert await store.last_claimed("login:ex-old:1") is None
    assert await store.last_claimed("sweep") is not None
    assert await store.last_claimed("login:ex-new:1") is not None
    assert await store.prune_claims(expired_before=expired_before) == 0
