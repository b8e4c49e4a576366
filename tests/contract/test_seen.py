"""SeenSet contract: atomic add-if-absent per execution, undo, forget."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from backends.seen import SeenSet
from tests.contract.conftest import Env


async def test_add_new_reports_what_it_added(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    assert await seen.add_new("ex-1", ["a", "b"]) == [True, True]
    assert await seen.add_new("ex-1", ["b", "c", "a"]) == [False, True, False]
    assert await seen.add_new("ex-1", []) == []


async def test_a_key_repeated_in_one_call_is_new_once(seen_env: Env[SeenSet]) -> None:
    assert await seen_env.adapter.add_new("ex-1", ["a", "a", "b", "a"]) == [
        True,
        False,
        True,
        False,
    ]


async def test_executions_are_separate(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    assert await seen.add_new("ex-1", ["a"]) == [True]
    assert await seen.add_new("ex-2", ["a"]) == [True]


async def test_discard_lets_a_key_be_claimed_again(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    await seen.add_new("ex-1", ["a", "b"])
    await seen.discard("ex-1", ["a", "never-added"])
    assert await seen.add_new("ex-1", ["a", "b"]) == [True, False]
    await seen.discard("unknown-execution", ["a"])


async def test_forget_drops_one_execution(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    await seen.add_new("ex-1", ["a"])
    await seen.add_new("ex-2", ["a"])
    await seen.forget("ex-1")
    assert await seen.add_new("ex-1", ["a"]) == [True]
    assert await seen.add_new("ex-2", ["a"]) == [False]
    await seen.forget("never-existed")


async def test_concurrent_overlapping_adds_claim_each_key_once(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    keys = [f"http://site.test/p/{i}" for i in range(300)]
    rng = random.Random(3)
    batches = [rng.sample(keys, 60) for _ in range(40)]  # heavy overlap between callers

    results = await asyncio.gather(*(seen.add_new("ex-1", batch) for batch in batches))

    claimed: Counter[str] = Counter()
    for batch, flags in zip(batches, results, strict=True):
        assert len(flags) == len(batch)
        claimed.update(key for key, new in zip(batch, flags, strict=True) if new)
    offered = {key for batch in batches for key in batch}
    assert set(claimed) == offered
    assert all(n == 1 for n in claimed.values())


async def test_large_batches(seen_env: Env[SeenSet]) -> None:
    seen = seen_env.adapter
    keys = [f"k{i}" for i in range(5000)]
    assert all(await seen.add_new("ex-1", keys))
    assert not any(await seen.add_new("ex-1", keys))


async def test_the_same_claimer_may_claim_its_keys_again(seen_env: Env[SeenSet]) -> None:
    """A task redelivered after its worker died mid-publish gets its links back."""
    seen = seen_env.adapter
    assert await seen.add_new("ex-1", ["a", "b"], claimer="parent-1") == [True, True]
    assert await seen.add_new("ex-1", ["a", "c"], claimer="parent-2") == [False, True]
    assert await seen.add_new("ex-1", ["a", "b", "c", "a"], claimer="parent-1") == [
        True,
        True,
        False,
        False,
    ]
    # Without a claimer nothing is ever claimed twice.
    assert await seen.add_new("ex-1", ["a", "d"]) == [False, True]
    assert await seen.add_new("ex-1", ["d"]) == [False]
