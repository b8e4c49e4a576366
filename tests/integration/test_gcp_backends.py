"""The Google Cloud adapters against emulators: what the contract suites cannot show.

The contract suites (tests/contract) check the TaskQueue and BlobStore semantics over
Pub/Sub and GCS; these tests check what only the services show: the topics and subscriptions
the queue sets up, how publishing batches, that a delayed nack is not delivered early, that
close() hands messages back at once, that GCS's precondition keeps if_absent writes from ever
overwriting, and what callers see when an emulator is down.

No test waits out an ack deadline: where a lease could run out mid-test the queue gets a
60 s one, and every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.cloud import pubsub_v1

from backends.blobs import BlobStore
from backends.errors import PermanentError, RetryableError
from backends.gcp import GcsBlobStore, PubSubTaskQueue, make_storage_client
from backends.gcp.dead_letters import replay_dead_letters
from backends.queue import Delivery, QueueClosed
from backends.task import Task, decode_task, encode_task
from tests.services import free_port
from tests.services import gcs as gcs_service
from tests.services import pubsub as pubsub_service
from tests.services.pubsub import PubSubNames

pytestmark = pytest.mark.integration

# The services' fixtures, for this module (tests/conftest.py does not list the modules).
pubsub_emulator = pubsub_service.pubsub_emulator
pubsub_names = pubsub_service.pubsub_names
gcs_emulator = gcs_service.gcs_emulator
gcs_bucket = gcs_service.gcs_bucket

DEADLINE_S = 10.0
LONG_LEASE_S = 60  # longer than any test here: nothing expires unless a test says so


def make_task(n: int, **fields: Any) -> Task:
    return Task(execution_id="ex-1", url=f"http://site.test/p/{n}", depth=1, phase="p", **fields)


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Wait for ``condition`` to hold, polling the loop; fail naming ``what`` if it never
    does."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def make_queue(names: PubSubNames, **overrides: Any) -> PubSubTaskQueue:
    options: dict[str, Any] = {
        "concurrency": 8,
        "ack_deadline_s": LONG_LEASE_S,
        "max_lease_s": LONG_LEASE_S,
        "dead_letter_topic": names.dead_letter_topic,
    }
    options.update(overrides)
    return PubSubTaskQueue(names.project, names.topic, names.subscription, **options)


@pytest.fixture
async def queue(pubsub_names: PubSubNames) -> AsyncIterator[PubSubTaskQueue]:
    queue = make_queue(pubsub_names)
    await queue.ensure_resources()
    try:
        yield queue
    finally:
        await queue.close()


async def receive(queue: PubSubTaskQueue) -> Delivery:
    return await asyncio.wait_for(queue.receive(), DEADLINE_S)


# -- Pub/Sub: resources


async def test_topics_and_subscriptions_are_created_with_the_configured_settings(
    pubsub_names: PubSubNames, caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue(
        pubsub_names, ack_deadline_s=42, max_delivery_attempts=7, message_retention_s=3600
    )
    try:
        await queue.ensure_resources()
        await queue.ensure_resources()  # again: nothing to do, no error
    finally:
        await queue.close()
    assert not caplog.records
    # Other settings for an existing subscription: left alone, and said so.
    changed = make_queue(pubsub_names, ack_deadline_s=43, max_delivery_attempts=7)
    try:
        await changed.ensure_resources()
    finally:
        await changed.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"subscription {queue.subscription_path} exists with ack_deadline_seconds=42, not 43 "
        "as configured; left as it is"
    ]

    def read_back() -> tuple[Any, Any, Any]:
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        try:
            return (
                subscriber.get_subscription(subscription=queue.subscription_path),
                publisher.get_topic(topic=queue.dead_letter_topic_path),
                subscriber.get_subscription(subscription=queue.dead_letter_subscription_path),
            )
        finally:
            subscriber.close()
            publisher.transport.close()

    subscription, dead_letter_topic, dead_letter_subscription = await asyncio.to_thread(read_back)
    project = f"projects/{pubsub_names.project}"
    assert subscription.topic == f"{project}/topics/{pubsub_names.topic}"
    assert subscription.ack_deadline_seconds == 42
    assert subscription.message_retention_duration.total_seconds() == 3600
    assert subscription.dead_letter_policy.dead_letter_topic == dead_letter_topic.name
    assert dead_letter_topic.name == f"{project}/topics/{pubsub_names.dead_letter_topic}"
    assert subscription.dead_letter_policy.max_delivery_attempts == 7
    assert "expiration_policy" in subscription and "ttl" not in subscription.expiration_policy
    # Dead letters have a subscription to stay in (a topic alone would drop them).
    assert dead_letter_subscription.topic == dead_letter_topic.name


async def test_bad_settings_are_refused_before_any_call(pubsub_names: PubSubNames) -> None:
    from backends.errors import InvalidInputError

    for bad in ({"ack_deadline_s": 5}, {"concurrency": 0}, {"max_delivery_attempts": 101}):
        with pytest.raises(InvalidInputError):
            make_queue(pubsub_names, **bad)


# -- Pub/Sub: publishing


async def test_a_thousand_tasks_are_published_in_batches_and_received_as_sent(
    queue: PubSubTaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[int] = []
    send = queue._send

    def counting_send(messages: list[Any]) -> None:
        requests.append(len(messages))
        send(messages)

    monkeypatch.setattr(queue, "_send", counting_send)
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    tasks = [make_task(i, marker="m", parent="http://site.test/", trace=trace) for i in range(1000)]
    await queue.publish(tasks)
    assert requests == [1000], f"1,000 tasks took {len(requests)} publish requests"

    received: list[Task] = []

    async def consume() -> None:
        while True:
            delivery = await queue.receive()
            received.append(delivery.task)
            await delivery.ack()

    consumers = [asyncio.create_task(consume()) for _ in range(8)]
    try:
        await until(lambda: len(received) >= 1000, "1,000 deliveries", 30.0)
    finally:
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    # Each task once, every field as sent.
    assert Counter(task.url for task in received) == Counter(task.url for task in tasks)
    by_url = {task.url: task for task in tasks}
    assert all(task == by_url[task.url] for task in received)


async def test_trace_context_travels_in_message_attributes_too(
    queue: PubSubTaskQueue, pubsub_names: PubSubNames
) -> None:
    subscriber = pubsub_v1.SubscriberClient()
    raw = subscriber.subscription_path(pubsub_names.project, "raw-reader")
    await asyncio.to_thread(subscriber.create_subscription, name=raw, topic=queue.topic_path)
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await queue.publish([make_task(1, trace=trace)])
    try:
        response = await asyncio.to_thread(
            subscriber.pull, subscription=raw, max_messages=1, timeout=DEADLINE_S
        )
    finally:
        subscriber.close()
    [message] = response.received_messages
    assert dict(message.message.attributes) == trace


async def test_publishing_to_a_stopped_emulator_is_retryable_and_names_it(
    pubsub_names: PubSubNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", address)
    queue = make_queue(pubsub_names, publish_timeout_s=1.0, rpc_timeout_s=1.0)
    try:
        with pytest.raises(RetryableError, match=address):
            await queue.ensure_resources()
        with pytest.raises(RetryableError, match=address) as caught:
            await queue.publish([make_task(1)])
        assert "1 of 1 tasks" in str(caught.value)
    finally:
        await queue.close()
    with pytest.raises(QueueClosed):
        await queue.publish([make_task(2)])


# -- Pub/Sub: receiving and settling


async def test_nack_with_delay_is_not_redelivered_before_the_delay(queue: PubSubTaskQueue) -> None:
    loop = asyncio.get_running_loop()
    await queue.publish([make_task(1)])
    first = await receive(queue)
    nacked_at = loop.time()
    await first.nack(delay_s=3.0)
    second = await receive(queue)
    assert loop.time() - nacked_at >= 3.0
    assert second.task == first.task
    assert second.delivery_attempt == first.delivery_attempt + 1
    await second.ack()


async def test_nack_delays_are_capped_at_pubsubs_maximum(queue: PubSubTaskQueue) -> None:
    await queue.publish([make_task(1)])
    delivery = await receive(queue)
    deadlines: list[int] = []
    message = delivery._arrival.message  # type: ignore[attr-defined]
    set_deadline = message.modify_ack_deadline

    def recording(seconds: int) -> None:
        deadlines.append(seconds)
        set_deadline(seconds)

    message.modify_ack_deadline = recording
    await delivery.nack(delay_s=3600.0)
    await until(lambda: bool(deadlines), "the delayed nack's deadline")
    assert deadlines == [600]


async def test_close_hands_back_every_unsettled_message_at_once(
    queue: PubSubTaskQueue,
) -> None:
    tasks = [make_task(i) for i in range(6)]
    await queue.publish(tasks)
    in_hand = await receive(queue)
    delayed = await receive(queue)
    await delayed.nack(delay_s=300.0)
    # The other four reached this process and wait in the queue's inbox.
    await until(lambda: queue._inbox.qsize() >= 4, "four messages in the inbox")
    await queue.close()
    await in_hand.ack()  # after close: ignored, the message was handed back
    with pytest.raises(QueueClosed):
        await queue.receive()

    # A plain pull sees what Pub/Sub offers now: the emulator does not push messages handed
    # back after their stream ended to other streaming pulls until their old deadline (60 s
    # here) runs out, where Pub/Sub offers them to every subscriber at once.
    subscriber = pubsub_v1.SubscriberClient()
    offered: list[Any] = []
    try:

        def pull() -> None:
            response = subscriber.pull(
                subscription=queue.subscription_path, max_messages=10, timeout=DEADLINE_S
            )
            offered.extend(response.received_messages)

        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE_S  # well inside the 60 s lease: handed back, not expired
        while len(offered) < 5 and loop.time() < end:
            await asyncio.to_thread(pull)
        assert sorted(pulled_url(m) for m in offered) == sorted(
            t.url for t in tasks if t != delayed.task
        )
        await asyncio.to_thread(
            subscriber.acknowledge,
            subscription=queue.subscription_path,
            ack_ids=[m.ack_id for m in offered],
        )
        # The delayed one keeps its delay through close().
        response = await asyncio.to_thread(
            subscriber.pull, subscription=queue.subscription_path, max_messages=10, timeout=2
        )
        assert list(response.received_messages) == []
    finally:
        subscriber.close()


def pulled_url(received: Any) -> str:
    """The task URL of a message pulled directly from the subscription."""
    return decode_task(received.message.data).url


async def test_close_stops_a_waiting_receiver(queue: PubSubTaskQueue) -> None:
    waiting = asyncio.create_task(queue.receive())
    await asyncio.sleep(0)
    await queue.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(waiting, DEADLINE_S)
    await queue.close()  # again: nothing


async def test_without_a_dead_letter_policy_attempts_are_counted_by_the_queue(
    pubsub_names: PubSubNames,
) -> None:
    queue = make_queue(pubsub_names, dead_letter_topic=None)
    await queue.ensure_resources()
    try:
        await queue.publish([make_task(1)])
        first = await receive(queue)
        assert first.delivery_attempt == 1
        await first.nack()
        second = await receive(queue)
        assert second.delivery_attempt == 2
        await second.ack()
    finally:
        await queue.close()


async def test_a_message_that_is_not_a_task_is_dropped_not_delivered(
    pubsub_names: PubSubNames,
) -> None:
    queue = make_queue(pubsub_names, dead_letter_topic=None)
    await queue.ensure_resources()
    try:
        raw = queue._publisher.publish(queue.topic_path, b"not a task")
        await asyncio.wrap_future(raw)
        await queue.publish([make_task(1)])
        delivery = await receive(queue)
        assert delivery.task == make_task(1)
        await delivery.ack()
        # Acked, not handed back: it never comes again.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.receive(), 1.0)
    finally:
        await queue.close()


async def test_a_deleted_subscription_ends_receive_with_a_retryable_error(
    queue: PubSubTaskQueue,
) -> None:
    await queue.publish([make_task(1)])
    delivery = await receive(queue)
    await delivery.ack()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        await asyncio.to_thread(
            subscriber.delete_subscription, subscription=queue.subscription_path
        )
    finally:
        subscriber.close()
    with pytest.raises(RetryableError, match=queue.subscription_path):
        await receive(queue)
    await queue.ensure_resources()  # back, and the next receive starts a new pull
    await queue.publish([make_task(2)])
    again = await receive(queue)
    assert again.task == make_task(2)
    await again.ack()


# -- GCS


@pytest.fixture
async def store(gcs_bucket: str) -> AsyncIterator[BlobStore]:
    store = GcsBlobStore.from_url(f"gs://{gcs_bucket}/runs", create_bucket=True)
    try:
        yield store
    finally:
        await store.close()


async def test_if_absent_never_overwrites(store: BlobStore) -> None:
    assert await store.write("ex-1/summary.json", b"first", if_absent=True)
    assert not await store.write("ex-1/summary.json", b"second", if_absent=True)
    assert await store.read("ex-1/summary.json") == b"first"
    # Large objects go up in a resumable upload; the precondition holds there too.
    large = os.urandom(9 * 1024 * 1024)
    assert await store.write("ex-1/large.bin", large, if_absent=True)
    assert not await store.write("ex-1/large.bin", b"small", if_absent=True)
    assert await store.read("ex-1/large.bin") == large
    # Racing writers of one name: one wins, and nobody's bytes replace the winner's.
    payloads = [bytes([i]) * (1000 + i) for i in range(10)]
    written = await asyncio.gather(
        *(store.write("ex-1/part.jsonl", data, if_absent=True) for data in payloads)
    )
    assert written.count(True) == 1
    assert await store.read("ex-1/part.jsonl") == payloads[written.index(True)]


async def test_stores_with_different_prefixes_share_a_bucket_apart(gcs_bucket: str) -> None:
    a = GcsBlobStore.from_url(f"gs://{gcs_bucket}/a", create_bucket=True)
    b = GcsBlobStore.from_url(f"gs://{gcs_bucket}/a-b/", create_bucket=True)
    try:
        await a.write("x/1", b"a")
        await b.write("x/1", b"b")
        assert [info.path for info in await a.list()] == ["x/1"]
        assert await a.read("x/1") == b"a" and await b.read("x/1") == b"b"
        assert (a.prefix, b.prefix) == ("a/", "a-b/")
    finally:
        await a.close()
        await b.close()


async def test_a_missing_bucket_is_a_permanent_error_naming_it(gcs_bucket: str) -> None:
    store = GcsBlobStore.from_url(f"gs://{gcs_bucket}", create_bucket=False)
    try:
        with pytest.raises(PermanentError, match=gcs_bucket):
            await store.write("a", b"x")
    finally:
        await store.close()


async def test_a_stopped_gcs_emulator_is_retryable_and_named(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{address}")
    store = GcsBlobStore(
        make_storage_client(), gcs_bucket, timeout_s=1.0, retry_deadline_s=1.0, owns_client=True
    )
    try:
        with pytest.raises(RetryableError, match=address):
            await store.write("a", b"x")
        with pytest.raises(RetryableError, match=address):
            await store.list()
    finally:
        await store.close()


def test_gcs_urls() -> None:
    from backends.errors import InvalidInputError

    for bad in ("s3://bucket/x", "gs:///x", "/local/dir"):
        with pytest.raises(InvalidInputError):
            GcsBlobStore.from_url(bad)


# -- Pub/Sub: dead letters (the emulator does not forward, so they are put there directly)


async def test_dead_letters_of_an_execution_are_replayed_and_others_left(
    queue: PubSubTaskQueue,
) -> None:
    dead = [
        Task(execution_id=e, url=f"http://shop.test/{e}/{n}", depth=1, phase="p")
        for e in ("ex-a", "ex-b")
        for n in range(3)
    ]
    assert queue.dead_letter_topic_path is not None
    publisher = pubsub_v1.PublisherClient()
    try:
        futures = [publisher.publish(queue.dead_letter_topic_path, encode_task(t)) for t in dead]
        futures.append(publisher.publish(queue.dead_letter_topic_path, b"not a task"))
        await asyncio.to_thread(lambda: [f.result(timeout=DEADLINE_S) for f in futures])
    finally:
        publisher.stop()

    replay = await replay_dead_letters(queue, "ex-a")
    assert (replay.replayed, replay.other_executions, replay.unreadable) == (3, 3, 1)
    received = [await receive(queue) for _ in range(3)]
    assert sorted(d.task.url for d in received) == [f"http://shop.test/ex-a/{n}" for n in range(3)]
    assert all(d.task.published_at > 0 and d.delivery_attempt == 1 for d in received)
    for delivery in received:
        await delivery.ack()
    # ex-b's dead letters were left for their own replay; ex-a has none left.
    assert (await replay_dead_letters(queue, "ex-a")).replayed == 0
    assert (await replay_dead_letters(queue, "ex-b")).replayed == 3
