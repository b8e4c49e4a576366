"""TaskLedger.backlog contract: the queued and held tasks of running executions, and when
the oldest queued one was registered (what the autoscaler and the dashboards read)."""

from __future__ import annotations

from backends.state import Backlog, StateStore
from tests.contract.conftest import Env
from tests.contract.state_data import execution, result


def _payloads(keys: list[str]) -> list[str]:
    return [f"task:{key}" for key in keys]


async def _running(store: StateStore, execution_id: str) -> None:
    await store.create_execution(execution(execution_id))
    assert await store.transition(execution_id, "running", from_statuses=["pending"])


async def test_nothing_running_is_an_empty_backlog(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.backlog() == Backlog()
    await store.create_execution(execution("ex-pending"))
    await store.add_tasks("ex-pending", ["a", "b"])  # registered, but not running
    assert await store.backlog() == Backlog()


async def test_queued_and_held_tasks_of_running_executions(state_env: Env[StateStore]) -> None:
    store, clock = state_env.adapter, state_env.clock
    await _running(store, "ex-a")
    started = clock.wall()
    await store.register_tasks("ex-a", ["a1", "a2", "a3"], payloads=_payloads(["a1", "a2", "a3"]))
    await state_env.advance(10)
    later = clock.wall()
    keys = ["a4", "a5", "a6", "a7"]
    registered = await store.register_tasks("ex-a", keys, payloads=_payloads(keys), window=5)
    assert (registered.publish, registered.held) == (["a4", "a5"], ["a6", "a7"])
    await store.finish_tasks("ex-a", [result("a1")])
    await _running(store, "ex-b")
    await store.add_tasks("ex-b", ["b1"])  # no payload: never held
    # Ended executions are not waiting for workers, whatever they left unfinished.
    await _running(store, "ex-ended")
    await store.add_tasks("ex-ended", ["c1", "c2"])
    assert await store.transition("ex-ended", "cancelled", from_statuses=["running"])

    backlog = await store.backlog()
    assert backlog == Backlog(running=2, queued=5, held=2, oldest_queued_at=started)

    # The oldest finishes: the next oldest registration is what the age counts from.
    await store.finish_tasks("ex-a", [result("a2"), result("a3", "failed", error_class="x")])
    backlog = await store.backlog()
    assert (backlog.queued, backlog.held, backlog.oldest_queued_at) == (3, 2, later)


async def test_a_released_task_counts_from_its_release(state_env: Env[StateStore]) -> None:
    store, clock = state_env.adapter, state_env.clock
    await _running(store, "ex-a")
    keys = ["k1", "k2", "k3"]
    await store.register_tasks("ex-a", keys, payloads=_payloads(keys), window=1)
    assert await store.backlog() == Backlog(
        running=1, queued=1, held=2, oldest_queued_at=clock.wall()
    )
    await state_env.advance(30)
    await store.finish_tasks("ex-a", [result("k1")])
    assert await store.release_tasks("ex-a", window=1) == ["task:k2"]
    released_at = clock.wall()
    assert await store.backlog() == Backlog(
        running=1, queued=1, held=1, oldest_queued_at=released_at
    )
    await store.finish_tasks("ex-a", [result("k2")])
    await store.finish_tasks("ex-a", [result("k3")])  # finished while held: no longer waiting
    assert await store.backlog() == Backlog(running=1)


async def test_a_reclaimed_task_counts_from_its_republication(
    state_env: Env[StateStore],
) -> None:
    store, clock = state_env.adapter, state_env.clock
    await _running(store, "ex-a")
    await store.register_tasks("ex-a", ["lost"], payloads=_payloads(["lost"]))
    await state_env.advance(600)
    assert await store.reclaim_tasks("ex-a", registered_before=clock.wall()) == ["task:lost"]
    backlog = await store.backlog()
    assert (backlog.queued, backlog.oldest_queued_at) == (1, clock.wall())
