"""ScheduleStore contract: a cap per tenant, edits that cannot overwrite each other, claims
that hand a due schedule to one scheduler at a time, and outcomes recorded only by the
claim that holds it, with a history of the newest fires."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from backends.errors import InvalidInputError
from backends.state import SCHEDULE_HISTORY, Schedule, ScheduleFire, StateStore
from tests.contract.conftest import Env
from tests.contract.state_data import T0


def schedule(
    id: str,
    *,
    tenant: str = "acme",
    next_run_at: datetime | None = T0,
    enabled: bool = True,
) -> Schedule:
    return Schedule(
        id=id,
        tenant=tenant,
        workflow="shop",
        cron="*/5 * * * *",
        timezone="Europe/Paris",
        created_at=T0,
        updated_at=T0,
        overrides=["max_pages=10"],
        next_run_at=next_run_at,
        enabled=enabled,
    )


def fire(outcome: str = "started", *, at: datetime = T0, **more: object) -> ScheduleFire:
    return ScheduleFire(scheduled_for=at, at=at, outcome=outcome, **more)  # type: ignore[arg-type]


async def test_create_read_list_and_delete(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.get_schedule("s-1") is None
    assert await store.create_schedule(schedule("s-1"), max_per_tenant=10)
    await state_env.advance(1.0)
    later = schedule("s-2", next_run_at=None, enabled=False)
    later = Schedule(**{**_fields(later), "created_at": T0 + timedelta(seconds=1)})
    assert await store.create_schedule(later, max_per_tenant=10)
    assert await store.create_schedule(schedule("s-3", tenant="globex"), max_per_tenant=10)
    got = await store.get_schedule("s-1")
    assert got == schedule("s-1")
    assert (got.revision, got.claim, got.counts, got.last_run_at) == (1, 0, {}, None)
    assert [s.id for s in await store.list_schedules("acme")] == ["s-1", "s-2"]
    assert [s.id for s in await store.list_schedules("globex")] == ["s-3"]
    assert await store.list_schedules("nobody") == []
    with pytest.raises(InvalidInputError, match="already exists"):
        await store.create_schedule(schedule("s-1"), max_per_tenant=10)
    assert await store.delete_schedule("s-1")
    assert not await store.delete_schedule("s-1")
    assert await store.get_schedule("s-1") is None
    assert await store.schedule_fires("s-1") == []


async def test_the_cap_per_tenant_holds_under_concurrent_creations(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    outcomes = await asyncio.gather(
        *(store.create_schedule(schedule(f"s-{i}"), max_per_tenant=3) for i in range(8))
    )
    assert sorted(outcomes) == [False] * 5 + [True] * 3
    assert len(await store.list_schedules("acme")) == 3
    # Another tenant has a cap of its own.
    assert await store.create_schedule(schedule("g-1", tenant="globex"), max_per_tenant=3)


async def test_an_edit_applies_only_over_the_revision_it_read(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_schedule(schedule("s-1"), max_per_tenant=10)
    read = await store.get_schedule("s-1")
    assert read is not None
    await state_env.advance(30.0)
    paused = Schedule(
        **{**_fields(read), "enabled": False, "next_run_at": None, "cron": "0 3 * * *"}
    )
    stored = await store.update_schedule(paused)
    assert stored is not None
    assert (stored.enabled, stored.next_run_at, stored.cron) == (False, None, "0 3 * * *")
    assert (stored.revision, stored.updated_at) == (2, state_env.clock.wall())
    assert stored.created_at == T0
    assert await store.get_schedule("s-1") == stored
    # A second edit made from the same read lost the race: refused, nothing changed.
    with pytest.raises(InvalidInputError, match="changed meanwhile"):
        await store.update_schedule(Schedule(**{**_fields(read), "cron": "0 4 * * *"}))
    assert await store.get_schedule("s-1") == stored
    assert await store.update_schedule(schedule("nope")) is None


async def test_a_due_schedule_is_claimed_once_until_its_lease_lapses(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_schedule(schedule("s-early", next_run_at=T0), max_per_tenant=10)
    await store.create_schedule(
        schedule("s-late", next_run_at=T0 + timedelta(seconds=30)), max_per_tenant=10
    )
    paused = schedule("s-paused", next_run_at=T0, enabled=False)
    await store.create_schedule(paused, max_per_tenant=10)
    future = schedule("s-future", next_run_at=T0 + timedelta(days=1))
    await store.create_schedule(future, max_per_tenant=10)
    first = await store.claim_due_schedules(limit=10, lease_s=60)
    assert [(s.id, s.claim) for s in first] == [("s-early", 1)]
    await state_env.advance(30.0)
    # Claimed: nobody else takes it, however many claim at once.
    rivals = await asyncio.gather(
        *(store.claim_due_schedules(limit=10, lease_s=60) for _ in range(4))
    )
    assert sorted(s.id for batch in rivals for s in batch) == ["s-late"]
    assert await store.claim_due_schedules(limit=10, lease_s=60) == []
    # Its claimer died: due again once the lease has lapsed, as the next claim.
    await state_env.advance(61.0)
    again = await store.claim_due_schedules(limit=1, lease_s=60)
    assert [(s.id, s.claim) for s in again] == [("s-early", 2)]
    assert await store.claim_due_schedules(limit=0, lease_s=60) == []


async def test_only_the_last_claim_records_and_the_history_keeps_the_newest(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_schedule(schedule("s-1"), max_per_tenant=10)
    (stale,) = await store.claim_due_schedules(limit=10, lease_s=60)
    await state_env.advance(61.0)
    (taken,) = await store.claim_due_schedules(limit=10, lease_s=60)
    next_at = T0 + timedelta(minutes=5)
    now = state_env.clock.wall()
    fires = [
        fire("missed", count=3, reason="3 fires passed while no scheduler ran"),
        fire("started", at=now, execution_id="ex-1"),
    ]
    assert not await store.record_fires(
        "s-1", claim=stale.claim, revision=1, fires=fires, next_run_at=next_at
    )
    assert await store.record_fires(
        "s-1", claim=taken.claim, revision=1, fires=fires, next_run_at=next_at
    )
    # Recorded once: the claim is released.
    assert not await store.record_fires(
        "s-1", claim=taken.claim, revision=1, fires=fires, next_run_at=next_at
    )
    got = await store.get_schedule("s-1")
    assert got is not None
    assert got.next_run_at == next_at
    assert (got.last_run_at, got.last_outcome, got.last_execution_id) == (now, "started", "ex-1")
    assert got.counts == {"missed": 3, "started": 1}
    assert await store.schedule_fires("s-1") == fires[::-1]
    assert await store.schedule_fires("s-1", limit=1) == [fires[1]]
    assert await store.claim_due_schedules(limit=10, lease_s=60) == []

    # Many more fires: the newest SCHEDULE_HISTORY are kept, the counts keep every one.
    for i in range(SCHEDULE_HISTORY + 5):
        await state_env.advance(300.0)
        (claimed,) = await store.claim_due_schedules(limit=10, lease_s=60)
        skipped = fire("skipped_overlap", at=state_env.clock.wall(), reason=f"#{i}")
        next_at = state_env.clock.wall() + timedelta(seconds=299)
        assert await store.record_fires(
            "s-1", claim=claimed.claim, revision=1, fires=[skipped], next_run_at=next_at
        )
    history = await store.schedule_fires("s-1")
    assert len(history) == SCHEDULE_HISTORY
    assert history[0].reason == f"#{SCHEDULE_HISTORY + 4}"
    assert history[-1].reason == "#5"
    got = await store.get_schedule("s-1")
    assert got is not None
    assert got.counts == {"missed": 3, "started": 1, "skipped_overlap": SCHEDULE_HISTORY + 5}
    assert (got.last_outcome, got.last_execution_id) == ("skipped_overlap", "ex-1")


async def test_an_edit_during_a_claim_keeps_its_own_next_run(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_schedule(schedule("s-1"), max_per_tenant=10)
    (claimed,) = await store.claim_due_schedules(limit=10, lease_s=60)
    edited_next = T0 + timedelta(hours=3)
    edited = await store.update_schedule(
        Schedule(**{**_fields(claimed), "cron": "0 3 * * *", "next_run_at": edited_next})
    )
    assert edited is not None and edited.revision == 2
    recorded = await store.record_fires(
        "s-1",
        claim=claimed.claim,
        revision=claimed.revision,
        fires=[fire("started", execution_id="ex-1")],
        next_run_at=T0 + timedelta(minutes=5),
    )
    assert recorded
    got = await store.get_schedule("s-1")
    assert got is not None
    assert (got.next_run_at, got.cron, got.last_execution_id) == (edited_next, "0 3 * * *", "ex-1")
    assert await store.delete_schedule("s-1")
    assert not await store.record_fires(
        "s-1", claim=claimed.claim, revision=2, fires=[], next_run_at=None
    )


def _fields(s: Schedule) -> dict[str, object]:
    return {f: getattr(s, f) for f in s.__struct_fields__}
