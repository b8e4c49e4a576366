"""TaskLedger contract: idempotent registration and finishes, the queue window, progress,
failures and warnings, leases, reclaiming, freezing and claims."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from backends.state import Activity, Progress, Registered, StateStore, TaskResult
from tests.contract.conftest import Env
from tests.contract.state_data import execution, result

# -- tasks and progress


async def test_add_tasks_is_idempotent(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    assert await store.add_tasks("ex-1", ["a", "b", "a"]) == ["a", "b"]
    # Registered but unfinished keys are handed back again: their publish may have failed.
    assert await store.add_tasks("ex-1", ["b", "c"]) == ["b", "c"]
    assert (await store.progress("ex-1")).published == 3
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.add_tasks("ex-1", ["a", "d"]) == ["d"]  # a finished task stays done
    assert (await store.progress("ex-1")).published == 4


async def test_add_tasks_caps_the_total(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    assert await store.add_tasks("ex-1", ["a", "b"], max_total=3) == ["a", "b"]
    assert await store.add_tasks("ex-1", ["c", "d", "e"], max_total=3) == ["c"]
    assert await store.add_tasks("ex-1", ["b", "f"], max_total=3) == ["b"]
    assert (await store.progress("ex-1")).published == 3


async def test_the_cap_holds_across_concurrent_callers(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    batches = [[f"w{w}-{i}" for i in range(10)] for w in range(10)]
    accepted = await asyncio.gather(
        *(store.add_tasks("ex-1", batch, max_total=25) for batch in batches)
    )
    assert sum(len(a) for a in accepted) == 25
    assert (await store.progress("ex-1")).published == 25


async def test_remove_tasks_undoes_unfinished_registrations(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a", "b", "c"])
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.remove_tasks("ex-1", ["a", "b", "zzz"]) == 1
    progress = await store.progress("ex-1")
    assert (progress.published, progress.finished) == (2, 1)


def _payloads(keys: list[str]) -> list[str]:
    return [k.upper() for k in keys]


async def test_a_window_holds_what_does_not_fit_and_releases_it_oldest_first(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = ["a", "b", "c"]
    registered = await store.register_tasks("ex-1", keys, payloads=_payloads(keys), window=2)
    assert registered == Registered(publish=["a", "b"], held=["c"])
    await state_env.advance(1.0)
    keys = ["d", "e", "c"]
    registered = await store.register_tasks("ex-1", keys, payloads=_payloads(keys), window=2)
    # c is still held: neither to publish nor newly held.
    assert registered == Registered(publish=[], held=["d", "e"])
    # Held tasks count as published: the execution is not complete while they wait.
    assert (await store.progress("ex-1")).published == 5
    assert await store.release_tasks("ex-1", window=2) == []  # no room yet
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.release_tasks("ex-1", window=2) == ["C"]
    assert await store.release_tasks("ex-1", window=2) == []
    await store.finish_tasks("ex-1", [result("b"), result("c")])
    # Oldest registration first; one registration's keys in no particular order.
    assert sorted(await store.release_tasks("ex-1", window=2)) == ["D", "E"]
    await store.finish_tasks("ex-1", [result("d"), result("e")])
    assert await store.release_tasks("ex-1", window=2) == []
    assert (await store.progress("ex-1")).complete


async def test_a_window_is_per_execution_and_ignores_keys_without_payloads(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    for id in ("ex-1", "ex-2"):
        await store.create_execution(execution(id))
    keys = ["a", "b", "c"]
    assert (await store.register_tasks("ex-1", keys, payloads=_payloads(keys), window=1)).held == [
        "b",
        "c",
    ]
    assert await store.register_tasks("ex-2", ["a"], payloads=["A"], window=1) == Registered(
        publish=["a"]
    )
    # Without a payload a task could not be published later: it is never held.
    assert await store.register_tasks("ex-1", ["x"], window=1) == Registered(publish=["x"])
    # No window: everything goes, and held tasks are released all at once.
    keys = ["d"]
    assert await store.register_tasks("ex-1", keys, payloads=_payloads(keys)) == Registered(
        publish=["d"]
    )
    assert sorted(await store.release_tasks("ex-1", window=0)) == ["B", "C"]


async def test_removing_or_finishing_a_held_task_frees_no_room(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = ["a", "b", "c", "d"]
    await store.register_tasks("ex-1", keys, payloads=_payloads(keys), window=1)
    assert await store.remove_tasks("ex-1", ["b"]) == 1
    await store.finish_tasks("ex-1", [result("c")])  # finished while held (a stray copy)
    assert await store.release_tasks("ex-1", window=1) == []  # a still fills the window
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.release_tasks("ex-1", window=1) == ["D"]
    await store.finish_tasks("ex-1", [result("d")])
    progress = await store.progress("ex-1")
    assert (progress.published, progress.finished, progress.complete) == (3, 3, True)


async def test_concurrent_releases_never_overfill_the_window(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i:02}" for i in range(40)]
    await store.register_tasks("ex-1", keys, payloads=_payloads(keys), window=4)
    await store.finish_tasks("ex-1", [result(k) for k in keys[:4]])
    released = await asyncio.gather(*(store.release_tasks("ex-1", window=4) for _ in range(6)))
    assert len([p for batch in released for p in batch]) == 4


async def test_reclaim_leaves_held_tasks_alone(state_env: Env[StateStore]) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    await store.create_execution(execution("ex-1"))
    await store.register_tasks("ex-1", ["a", "b"], payloads=["A", "B"], window=1)
    await state_env.advance(300.0)
    assert await store.reclaim_tasks("ex-1", registered_before=now()) == ["A"]


async def test_duplicate_finishes_do_not_change_counts(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a", "b", "c"])
    assert await store.finish_tasks("ex-1", [result("a"), result("b", "filtered")]) == 2
    before = await store.progress("ex-1")
    # A redelivered task finishes again, this time differently: the first finish stands.
    assert await store.finish_tasks("ex-1", [result("a", "failed", error_class="timeout")]) == 0
    assert await store.finish_tasks("ex-1", [result("b"), result("b")]) == 0
    assert await store.progress("ex-1") == before
    assert await store.failures("ex-1") == []
    assert before.published == 3 and before.finished == 2
    assert not (await store.progress("ex-1")).complete
    assert await store.finish_tasks("ex-1", [result("c"), result("c")]) == 1
    assert (await store.progress("ex-1")).complete


async def test_concurrent_duplicate_finishes_count_once(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i}" for i in range(50)]
    await store.add_tasks("ex-1", keys)
    counted = await asyncio.gather(
        *(store.finish_tasks("ex-1", [result(k) for k in keys]) for _ in range(4))
    )
    assert sum(counted) == 50
    progress = await store.progress("ex-1")
    assert (progress.finished, progress.records) == (50, 50)


async def test_racing_finishes_with_different_outcomes_count_one_outcome_per_key(
    state_env: Env[StateStore],
) -> None:
    """Several writers finish the same keys at once, each batch in its own order and with
    its own outcome (a shuffled redelivery): every key counts once, under one outcome, and
    every count agrees with that."""
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i:03}" for i in range(120)]
    await store.add_tasks("ex-1", keys)
    batches = [
        [result(k) for k in keys],
        [result(k, "failed", error_class="timeout") for k in reversed(keys)],
        [result(k, "filtered") for k in keys[60:] + keys[:60]],
        [result(k, "failed", error_class="http_500") for k in keys[::2] + keys[1::2]],
    ]
    counted = await asyncio.gather(*(store.finish_tasks("ex-1", b) for b in batches))
    progress = await store.progress("ex-1")
    assert sum(counted) == progress.finished == progress.published == 120
    assert sum(progress.by_outcome.values()) == 120
    assert progress.records == progress.by_outcome.get("succeeded", 0)
    assert sum(progress.failures_by_class.values()) == progress.by_outcome.get("failed", 0)
    assert len(await store.failures("ex-1", limit=1000)) == progress.by_outcome.get("failed", 0)
    assert progress.by_phase == {"product": progress.by_outcome}
    assert progress.complete


async def test_registrations_racing_finishes_count_each_key_once(
    state_env: Env[StateStore],
) -> None:
    """Registering keys while other writers finish them (some before they were registered
    at all): each key is published once and finished once, whichever came first."""
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i:03}" for i in range(200)]
    calls = []
    for start in range(0, 200, 20):
        chunk = keys[start : start + 20]
        calls.append(store.add_tasks("ex-1", chunk))
        calls.append(store.finish_tasks("ex-1", [result(k) for k in reversed(chunk)]))
        calls.append(store.add_tasks("ex-1", chunk[::-1], max_total=1000))
    await asyncio.gather(*calls)
    progress = await store.progress("ex-1")
    assert (progress.published, progress.finished, progress.records) == (200, 200, 200)
    assert progress.complete
    assert await store.add_tasks("ex-1", keys) == []
    assert await store.remove_tasks("ex-1", keys) == 0


async def test_progress_shapes(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["s", "l1", "l2", "p1", "p2", "p3", "x"])
    await store.finish_tasks(
        "ex-1",
        [
            result("s", phase="start", marker=None, records=0),
            result("l1", phase="listing", marker="category", records=0),
            result("l2", "failed", phase="listing", marker="category", error_class="timeout"),
            result("p1", phase="product", warnings={"field_type": 2}),
            result("p2", phase="product", warnings={"field_type": 1, "script": 1}),
            result("p3", "failed", phase="product", error_class="http_404"),
        ],
    )
    await store.finish_tasks("ex-1", [result("x", "filtered", phase="product", marker="page")])
    assert await store.progress("ex-1") == Progress(
        published=7,
        finished=7,
        by_outcome={"succeeded": 4, "failed": 2, "filtered": 1},
        by_phase={
            "start": {"succeeded": 1},
            "listing": {"succeeded": 1, "failed": 1},
            "product": {"succeeded": 2, "failed": 1, "filtered": 1},
        },
        by_marker={
            "": {"succeeded": 1},
            "category": {"succeeded": 1, "failed": 1},
            "product": {"succeeded": 2, "failed": 1},
            "page": {"filtered": 1},
        },
        failures_by_class={"timeout": 1, "http_404": 1},
        warnings={"field_type": 3, "script": 1},
        records=2,
    )
    assert (await store.progress("ex-1")).complete


async def test_the_funnel_adds_up_per_phase_and_marker(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.add_tasks("ex-1", ["a", "b"])
    first = msgspec.structs.replace(
        result("a"),
        funnel={
            "discovered|product|product": 5,
            "in_scope|product|product": 4,
            "new|product|product": 3,
            "discovered|listing|": 2,
        },
    )
    second = msgspec.structs.replace(
        result("b"), funnel={"new|product|product": 1, "fetched|product|product": 1}
    )
    await store.finish_tasks("ex-1", [first, second])
    await store.finish_tasks("ex-1", [first])  # a redelivered duplicate counts nothing
    progress = await store.progress("ex-1")
    assert progress.funnel == {
        "product|product": {"discovered": 5, "in_scope": 4, "new": 4, "fetched": 1},
        "listing|": {"discovered": 2},
    }


async def test_progress_is_a_snapshot(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a", "b"])
    await store.finish_tasks("ex-1", [result("a")])
    snapshot = await store.progress("ex-1")
    await store.finish_tasks("ex-1", [result("b")])
    assert snapshot.finished == 1 and snapshot.by_outcome == {"succeeded": 1}


async def test_completion_needs_something_published(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    assert await store.progress("ex-1") == Progress()
    assert not (await store.progress("ex-1")).complete
    assert await store.progress("unknown") == Progress()


async def test_a_finish_for_an_unregistered_key_counts_as_published(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a"])
    assert await store.finish_tasks("ex-1", [result("stray")]) == 1
    progress = await store.progress("ex-1")
    assert (progress.published, progress.finished) == (2, 1)
    assert await store.add_tasks("ex-1", ["stray"]) == []


async def test_failures_newest_first(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i}" for i in range(5)]
    await store.add_tasks("ex-1", keys)
    for key in keys:
        await store.finish_tasks("ex-1", [result(key, "failed", error_class="http_500")])
        await state_env.advance(1.0)
    failures = await store.failures("ex-1", limit=3)
    assert [f.key for f in failures] == ["k4", "k3", "k2"]
    first = failures[0]
    assert (first.url, first.phase, first.error_class) == ("k4", "product", "http_500")
    assert (first.message, first.attempt) == ("http_500 happened", 1)
    assert failures[0].at >= failures[1].at
    assert len(await store.failures("ex-1")) == 5
    assert await store.failures("unknown") == []


# -- reconciling, stalls and cancels


async def test_reclaim_hands_back_old_unleased_unfinished_tasks(
    state_env: Env[StateStore],
) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a", "b", "c", "d"], payloads=["A", "B", "C", "D"])
    await store.finish_tasks("ex-1", [result("a")])
    await store.lease_tasks("ex-1", ["b"], now() + timedelta(seconds=600))
    # Registered too recently: nothing yet.
    assert await store.reclaim_tasks("ex-1", registered_before=now() - timedelta(seconds=1)) == []
    await state_env.advance(300.0)
    before = now() - timedelta(seconds=60)
    # a finished, b is leased: c and d come back, once.
    assert sorted(await store.reclaim_tasks("ex-1", registered_before=before)) == ["C", "D"]
    assert await store.reclaim_tasks("ex-1", registered_before=before) == []
    await state_env.advance(400.0)  # b's lease has run out; c and d were reclaimed 400 s ago
    later = now() - timedelta(seconds=60)
    assert sorted(await store.reclaim_tasks("ex-1", registered_before=later)) == ["B", "C", "D"]
    assert await store.reclaim_tasks("ex-1", registered_before=later, limit=0) == []
    assert await store.reclaim_tasks("unknown", registered_before=later) == []


async def test_reclaim_leaves_out_tasks_without_a_payload(state_env: Env[StateStore]) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", ["a"])
    await store.add_tasks("ex-1", ["b", "a"], payloads=["B", "A"])  # a was registered before
    await state_env.advance(10.0)
    assert await store.reclaim_tasks("ex-1", registered_before=now()) == ["B"]


async def test_leases_count_while_live_and_unfinished(state_env: Env[StateStore]) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    await store.create_execution(execution("ex-1"))
    assert await store.lease_tasks("ex-1", ["a"], now()) == 0  # nothing registered
    await store.add_tasks("ex-1", ["a", "b", "c"])
    assert (await store.activity("ex-1")).last_leased_at is None
    until = now() + timedelta(seconds=60)
    assert await store.lease_tasks("ex-1", ["a", "b", "zz"], until) == 2
    assert await store.live_leases("ex-1") == 2
    assert (await store.activity("ex-1")).last_leased_at == now()
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.live_leases("ex-1") == 1
    await state_env.advance(61.0)
    assert await store.live_leases("ex-1") == 0
    assert await store.live_leases("unknown") == 0


async def test_activity_tracks_the_last_finish(state_env: Env[StateStore]) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    await store.create_execution(execution("ex-1"))
    assert await store.activity("ex-1") == Activity()
    await store.add_tasks("ex-1", ["a", "b"])
    await state_env.advance(5.0)
    await store.finish_tasks("ex-1", [result("a")])
    finished_at = now()
    await state_env.advance(5.0)
    await store.finish_tasks("ex-1", [result("a")])  # a duplicate: no progress
    assert (await store.activity("ex-1")).last_finished_at == finished_at


async def test_freeze_stops_the_counters_of_an_ended_execution(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.transition("ex-1", "running", from_statuses={"pending"})
    await store.add_tasks("ex-1", ["a", "b", "c"])
    await store.finish_tasks("ex-1", [result("a")])
    assert await store.freeze("ex-1") is False  # still running
    assert await store.freeze("unknown") is False
    await store.transition("ex-1", "cancelled", from_statuses={"running"})
    assert await store.finish_tasks("ex-1", [result("b")]) == 1  # not frozen yet
    assert await store.freeze("ex-1") is True
    assert await store.freeze("ex-1") is False  # once
    assert (await store.activity("ex-1")).frozen_at is not None
    assert await store.finish_tasks("ex-1", [result("c")]) == 0
    assert await store.add_tasks("ex-1", ["d"]) == []
    progress = await store.progress("ex-1")
    assert (progress.published, progress.finished, progress.records) == (3, 2, 2)


async def test_freeze_waits_for_a_finish_in_progress(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.transition("ex-1", "cancelled", from_statuses={"pending"})
    keys = [f"k{i}" for i in range(200)]
    await store.add_tasks("ex-1", keys)
    batches = [[result(k) for k in keys[i : i + 10]] for i in range(0, 200, 10)]
    counted = await asyncio.gather(
        *(store.finish_tasks("ex-1", b) for b in batches[:10]),
        store.freeze("ex-1"),
        *(store.finish_tasks("ex-1", b) for b in batches[10:]),
    )
    progress = await store.progress("ex-1")
    # Whatever counted before the freeze, and nothing after: the counters agree.
    total = sum(c for c in counted if not isinstance(c, bool))
    assert progress.finished == progress.records == total


async def test_sweep_candidates(state_env: Env[StateStore]) -> None:
    store, now = state_env.adapter, state_env.clock.wall
    for name in ("busy", "stuck", "done", "cancelled", "frozen"):
        await store.create_execution(execution(name))
        await store.transition(name, "running", from_statuses={"pending"})
        await store.add_tasks(name, ["a", "b"])
    await store.finish_tasks("done", [result("a"), result("b")])
    await store.transition("cancelled", "cancelled", from_statuses={"running"})
    await store.transition("frozen", "cancelled", from_statuses={"running"})
    await store.freeze("frozen")
    await state_env.advance(200.0)
    await store.finish_tasks("busy", [result("a")])
    found = await store.sweep_candidates(stalled_before=now() - timedelta(seconds=100))
    assert sorted(found) == ["cancelled", "stuck"]
    assert len(await store.sweep_candidates(stalled_before=now(), limit=1)) == 1


async def test_a_claim_is_held_until_it_expires(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.last_claimed("sweep") is None
    assert await store.claim("sweep", "w1", 15.0) is True
    taken = state_env.clock.wall()
    assert await store.claim("sweep", "w2", 15.0) is False
    assert await store.claim("sweep", "w1", 15.0) is True  # renewed by its owner
    assert await store.claim("other", "w2", 15.0) is True
    await state_env.advance(16.0)
    assert await store.claim("sweep", "w2", 15.0) is True
    assert await store.last_claimed("sweep") == state_env.clock.wall()
    assert taken < state_env.clock.wall()


# -- failures.jsonl and warning examples (honest runs)


async def test_iter_failures_yields_every_failure_oldest_first(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    keys = [f"k{i:04d}" for i in range(1203)]  # more than one page of a paged adapter
    await store.add_tasks("ex-1", keys)
    await store.finish_tasks("ex-1", [result(k, "failed", error_class="http_404") for k in keys])
    await store.finish_tasks("ex-1", [result("k0000", "failed", error_class="again")])
    found = [f async for f in store.iter_failures("ex-1")]
    assert [f.key for f in found] == keys
    assert (found[0].error_class, found[0].message, found[0].attempt) == (
        "http_404",
        "http_404 happened",
        1,
    )
    assert [f async for f in store.iter_failures("unknown")] == []


def warned(key: str, phase: str, fields: dict[str, int]) -> TaskResult:
    base = result(key, phase=phase, warnings={k.partition("|")[0]: v for k, v in fields.items()})
    return msgspec.structs.replace(base, warning_fields=fields)


async def test_warning_examples_count_first_finishes_and_keep_a_few_urls(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    await store.add_tasks("ex-1", [f"u{i}" for i in range(6)])
    await store.finish_tasks(
        "ex-1",
        [
            warned("u0", "product", {"field_conversion|price": 1}),
            warned("u1", "product", {"field_conversion|price": 2, "field_bad_url|img": 1}),
            warned("u0", "product", {"field_conversion|price": 5}),  # a duplicate: ignored
        ],
    )
    await store.finish_tasks("ex-1", [warned("u1", "product", {"field_conversion|price": 9})])
    for key in ("u2", "u3", "u4"):
        await store.finish_tasks("ex-1", [warned(key, "product", {"field_conversion|price": 1})])
    await store.finish_tasks("ex-1", [warned("u5", "listing", {"field_conversion|price": 1})])
    examples = await store.warning_examples("ex-1")
    assert [(e.kind, e.phase, e.field, e.count, e.urls) for e in examples] == [
        ("field_bad_url", "product", "img", 1, ["u1"]),
        ("field_conversion", "listing", "price", 1, ["u5"]),
        ("field_conversion", "product", "price", 6, ["u0", "u1", "u2"]),
    ]
    assert await store.warning_examples("unknown") == []
