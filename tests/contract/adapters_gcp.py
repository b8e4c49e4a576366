"""The Google Cloud adapters in the TaskQueue and BlobStore contract suites, on emulators.

Each env gets names of its own: a Pub/Sub project (topic, subscription, dead-letter topic)
or a GCS bucket, on the shared emulators (started if needed, see tests/services).

Pub/Sub keeps time on the server (ack deadlines, nack delays), so the queue's env runs on
the real clock and ``advance`` really waits: the suite takes minutes over Pub/Sub, most of it
in the tests that wait out deadlines. The queue is configured with Pub/Sub's shortest ack
deadline (10 s), both for the subscription and for the leases it hands out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backends.blobs import BlobStore
from backends.clock import FakeClock, SystemClock
from backends.gcp import GcsBlobStore, PubSubTaskQueue, make_storage_client
from tests.contract.conftest import Env, QueueEnv, fake_advance
from tests.services.gcs import delete_bucket, unique_bucket, use_gcs_emulator
from tests.services.pubsub import delete_project, unique_names, use_pubsub_emulator

ACK_DEADLINE_S = 10


async def wall_advance(seconds: float) -> None:
    """Let ``seconds`` of server time pass: the only way to move Pub/Sub's clock."""
    await asyncio.sleep(seconds)


@asynccontextmanager
async def pubsub_queue() -> AsyncIterator[QueueEnv]:
    await asyncio.to_thread(use_pubsub_emulator)
    names = unique_names()
    queue = PubSubTaskQueue(
        names.project,
        names.topic,
        names.subscription,
        concurrency=16,
        ack_deadline_s=ACK_DEADLINE_S,
        max_lease_s=ACK_DEADLINE_S,
        dead_letter_topic=names.dead_letter_topic,
        max_delivery_attempts=100,
    )
    try:
        await queue.ensure_resources()
        yield QueueEnv(queue, SystemClock(), wall_advance, ack_deadline_s=float(ACK_DEADLINE_S))
    finally:
        await queue.close()
        await asyncio.to_thread(delete_project, names.project)


@asynccontextmanager
async def gcs_blobs() -> AsyncIterator[Env[BlobStore]]:
    await asyncio.to_thread(use_gcs_emulator)
    clock = FakeClock()
    client = make_storage_client()
    bucket = unique_bucket()
    # A prefix, so the suite also checks that names are relative to it.
    store = GcsBlobStore(client, bucket, "trawl/outputs", create_bucket=True)
    try:
        yield Env(store, clock, fake_advance(clock))
    finally:
        await store.close()
        await asyncio.to_thread(delete_bucket, client, bucket)
        await asyncio.to_thread(client.close)


QUEUE = {"pubsub": pubsub_queue}
BLOB = {"gcs": gcs_blobs}
