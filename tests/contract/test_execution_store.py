"""ExecutionStore contract: creation, listing, status compare-and-set, the running cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from backends.errors import InvalidInputError
from backends.state import StateStore
from tests.contract.conftest import Env
from tests.contract.state_data import T0, execution

# -- executions


async def test_create_and_get_execution(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    got = await store.get_execution("ex-1")
    assert got is not None
    assert got.status == "pending"
    assert got.started_at is None and got.finished_at is None
    assert got.params == {"max_pages": 10}
    assert got.created_at == T0
    assert await store.get_execution("ex-2") is None
    with pytest.raises(InvalidInputError):
        await store.create_execution(execution("ex-1"))


async def test_list_executions_newest_first_by_tenant(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    for i in range(5):
        await store.create_execution(execution(f"ex-{i}", at=T0 + timedelta(minutes=i)))
    await store.create_execution(execution("blog-1", workflow="blog", at=T0))
    await store.create_execution(execution("other", tenant="t2"))
    all_ids = [e.id for e in await store.list_executions("default")]
    assert all_ids[:5] == ["ex-4", "ex-3", "ex-2", "ex-1", "ex-0"]
    assert set(all_ids) == {"ex-0", "ex-1", "ex-2", "ex-3", "ex-4", "blog-1"}
    page = await store.list_executions("default", workflow="shop", limit=2, offset=1)
    assert [e.id for e in page] == ["ex-3", "ex-2"]
    assert [e.id for e in await store.list_executions("default", workflow="blog")] == ["blog-1"]
    assert [e.id for e in await store.list_executions("t2")] == ["other"]
    assert await store.list_executions("t3") == []


async def test_transition_is_compare_and_set(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    assert not await store.transition("ex-1", "completed", from_statuses={"running"})
    assert await store.transition("ex-1", "running", from_statuses={"pending"})
    running = await store.get_execution("ex-1")
    assert running is not None and running.status == "running"
    assert running.started_at is not None and running.finished_at is None

    await state_env.advance(5.0)
    # Two workers see the last task finish; one completes the execution.
    outcomes = await asyncio.gather(
        *(store.transition("ex-1", "completed", from_statuses={"running"}) for _ in range(5))
    )
    assert sorted(outcomes) == [False, False, False, False, True]
    done = await store.get_execution("ex-1")
    assert done is not None and done.status == "completed"
    assert done.finished_at is not None and done.started_at is not None
    assert done.finished_at >= done.started_at
    assert done.started_at == running.started_at
    assert not await store.transition("ex-1", "cancelled", from_statuses={"pending", "running"})
    assert not await store.transition("nope", "running", from_statuses={"pending"})


async def test_a_failed_execution_says_why(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    assert await store.transition(
        "ex-1", "failed", from_statuses={"pending"}, error="workflow version 1 is gone"
    )
    failed = await store.get_execution("ex-1")
    assert failed is not None
    assert (failed.status, failed.error) == ("failed", "workflow version 1 is gone")
    assert failed.started_at is None and failed.finished_at is not None


async def test_active_executions_are_counted_per_tenant(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    for i in range(3):
        await store.create_execution(execution(f"a-{i}", tenant="a"))
    await store.create_execution(execution("b-0", tenant="b"))
    await store.transition("a-0", "running", from_statuses={"pending"})
    await store.transition("a-1", "cancelled", from_statuses={"pending"})
    assert await store.count_active_executions("a") == 2
    assert await store.count_active_executions("b") == 1
    assert await store.count_active_executions("c") == 0


# -- the running-execution cap


async def test_capped_creation_stops_at_the_cap(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.create_execution_capped(execution("a-0", tenant="a"), 2)
    assert await store.create_execution_capped(execution("a-1", tenant="a"), 2)
    assert not await store.create_execution_capped(execution("a-2", tenant="a"), 2)
    assert await store.get_execution("a-2") is None
    assert await store.create_execution_capped(execution("b-0", tenant="b"), 2)  # per tenant
    # An ended execution frees its place; a running one keeps it.
    await store.transition("a-0", "running", from_statuses={"pending"})
    assert not await store.create_execution_capped(execution("a-2", tenant="a"), 2)
    await store.transition("a-0", "completed", from_statuses={"running"})
    assert await store.create_execution_capped(execution("a-2", tenant="a"), 2)
    assert await store.count_active_executions("a") == 2
    with pytest.raises(InvalidInputError, match="already exists"):
        await store.create_execution_capped(execution("b-0", tenant="b"), 5)


async def test_concurrent_capped_creations_never_overshoot(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    created = await asyncio.gather(
        *(store.create_execution_capped(execution(f"c-{i}", tenant="c"), 3) for i in range(12))
    )
    assert sum(created) == 3
    assert await store.count_active_executions("c") == 3
    assert len(await store.list_executions("c")) == 3
