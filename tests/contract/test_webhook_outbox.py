"""WebhookOutbox contract: one call per execution, claims that keep two senders apart, and
attempts recorded only by their claimer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from backends.state import StateStore
from tests.contract.conftest import Env
from tests.contract.state_data import T0

URL = "https://hooks.example/trawl"


async def enqueue(store: StateStore, execution_id: str, payload: str = '{"n": 1}') -> bool:
    return await store.enqueue_webhook(execution_id, tenant="acme", url=URL, payload=payload)


async def test_one_call_per_execution_whoever_enqueues_it(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.get_webhook("ex-1") is None
    outcomes = await asyncio.gather(*(enqueue(store, "ex-1", f'{{"n": {i}}}') for i in range(5)))
    assert sorted(outcomes) == [False, False, False, False, True]
    call = await store.get_webhook("ex-1")
    assert call is not None
    assert (call.execution_id, call.tenant, call.url) == ("ex-1", "acme", URL)
    assert call.payload in {f'{{"n": {i}}}' for i in range(5)}
    assert (call.status, call.attempts, call.last_error, call.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert call.created_at == call.next_at == T0
    assert not await enqueue(store, "ex-1", '{"n": 9}')
    again = await store.get_webhook("ex-1")
    assert again == call


async def test_a_claim_takes_due_calls_once_until_its_lease_lapses(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await enqueue(store, "ex-a")
    await state_env.advance(1.0)
    await enqueue(store, "ex-b")
    # Earliest due first, at most ``limit``.
    first = await store.claim_webhooks(limit=1, lease_s=40)
    assert [(c.execution_id, c.attempts) for c in first] == [("ex-a", 1)]
    assert first[0].next_at == state_env.clock.wall() + timedelta(seconds=40)
    # Claimed: nobody else takes it, however many claim at once.
    rivals = await asyncio.gather(*(store.claim_webhooks(limit=10, lease_s=40) for _ in range(4)))
    assert sorted(c.execution_id for batch in rivals for c in batch) == ["ex-b"]
    assert await store.claim_webhooks(limit=10, lease_s=40) == []
    # Its claimer died: due again once the lease has lapsed, as the next attempt.
    await state_env.advance(41.0)
    again = await store.claim_webhooks(limit=10, lease_s=40)
    assert sorted((c.execution_id, c.attempts) for c in again) == [("ex-a", 2), ("ex-b", 2)]
    assert await store.claim_webhooks(limit=0, lease_s=40) == []


async def test_a_failed_attempt_is_due_again_at_its_retry_time(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await enqueue(store, "ex-1")
    (claimed,) = await store.claim_webhooks(limit=10, lease_s=40)
    assert claimed.attempts == 1
    retry_at = state_env.clock.wall() + timedelta(seconds=2)
    assert await store.record_webhook_attempt(
        "ex-1", attempt=1, delivered=False, error="HTTP 500", retry_at=retry_at
    )
    pending = await store.get_webhook("ex-1")
    assert pending is not None
    assert (pending.status, pending.attempts, pending.next_at) == ("pending", 1, retry_at)
    assert pending.last_error == "HTTP 500"
    await state_env.advance(1.0)
    assert await store.claim_webhooks(limit=10, lease_s=40) == []
    await state_env.advance(1.0)
    (retried,) = await store.claim_webhooks(limit=10, lease_s=40)
    assert retried.attempts == 2
    await state_env.advance(0.5)
    assert await store.record_webhook_attempt("ex-1", attempt=2, delivered=True)
    delivered = await store.get_webhook("ex-1")
    assert delivered is not None
    assert (delivered.status, delivered.attempts, delivered.last_error) == ("delivered", 2, None)
    assert delivered.finished_at == state_env.clock.wall()
    await state_env.advance(3600.0)
    assert await store.claim_webhooks(limit=10, lease_s=40) == []
    # Final: nothing records over it.
    assert not await store.record_webhook_attempt("ex-1", attempt=2, delivered=False)
    assert await store.get_webhook("ex-1") == delivered


async def test_a_call_given_up_is_failed_with_its_reason(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await enqueue(store, "ex-1")
    await store.claim_webhooks(limit=10, lease_s=40)
    assert await store.record_webhook_attempt(
        "ex-1", attempt=1, delivered=False, error="refused: a private address"
    )
    failed = await store.get_webhook("ex-1")
    assert failed is not None
    assert (failed.status, failed.last_error) == ("failed", "refused: a private address")
    assert failed.finished_at == state_env.clock.wall()
    await state_env.advance(3600.0)
    assert await store.claim_webhooks(limit=10, lease_s=40) == []


async def test_only_the_last_claim_records_its_attempt(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await enqueue(store, "ex-1")
    await store.claim_webhooks(limit=10, lease_s=40)  # attempt 1, whose claimer stalls
    await state_env.advance(41.0)
    await store.claim_webhooks(limit=10, lease_s=40)  # attempt 2, by another worker
    assert not await store.record_webhook_attempt("ex-1", attempt=1, delivered=True)
    assert not await store.record_webhook_attempt("ex-2", attempt=1, delivered=True)
    assert await store.record_webhook_attempt("ex-1", attempt=2, delivered=True)
    call = await store.get_webhook("ex-1")
    assert call is not None and (call.status, call.attempts) == ("delivered", 2)
