"""Composition root of the distributed shape: the real adapters, built from Settings.

Pub/Sub for tasks, Redis for the seen-set and rate limits, Postgres (through PgBouncer) for
state, GCS for outputs. Every process of a deployment (workers, `trawl submit`, `trawl
status`, the orchestrator) opens its ports here, so they agree on names and options.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

from backends.gcp.gcs import GcsBlobStore, make_storage_client
from backends.gcp.pubsub import PubSubTaskQueue
from backends.postgres import PostgresStateStore
from backends.redis import RedisRateLimiter, RedisSeenSet
from backends.secret_cipher import SecretCipher
from backends.state import Execution, StateStore
from trawl.settings import Settings
from worker.assemble import Ports
from worker.recrawl import RecrawlSource
from worker.start import start_execution, store_workflow
from workflows.spec import Workflow

FLOW_CONTROL_FACTOR = 8


def worker_id(settings: Settings) -> str:
    """A name for this process in part-file names: unique across machines and restarts."""
    if settings.worker_id:
        return settings.worker_id
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def make_queue(settings: Settings) -> PubSubTaskQueue:
    """The Pub/Sub queue with the subscription settings of this deployment."""
    return PubSubTaskQueue(
        settings.pubsub_project,
        settings.pubsub_topic,
        settings.pubsub_subscription,
        # Messages stay outstanding until the sink has flushed and acked them, so the
        # stream must hold the tasks being processed plus those waiting in the sink's
        # batch; holding only `concurrency` would idle the worker between flushes.
        concurrency=settings.worker_concurrency * FLOW_CONTROL_FACTOR,
        ack_deadline_s=settings.pubsub_ack_deadline_s,
        dead_letter_topic=settings.pubsub_dead_letter_topic or None,
        max_delivery_attempts=settings.pubsub_max_delivery_attempts,
        message_retention_s=settings.pubsub_retention_s,
    )


def make_blobs(settings: Settings) -> GcsBlobStore:
    """The bucket (and prefix) outputs go to."""
    return GcsBlobStore(
        make_storage_client(settings.pubsub_project),
        settings.gcs_bucket,
        settings.gcs_prefix,
        create_bucket=settings.gcs_create_bucket,
        owns_client=True,
    )


@contextlib.asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[StateStore]:
    """The Postgres state store alone (status and export commands need nothing else)."""
    state = await PostgresStateStore.from_url(
        settings.database_url,
        max_size=settings.database_pool_size,
        cipher=SecretCipher.from_setting(settings.secrets_key),  # secrets sealed at rest
        counter_shards=settings.counter_shards,  # this process's one among them, at random
    )
    try:
        yield state
    finally:
        await state.close()


@contextlib.asynccontextmanager
async def open_ports(settings: Settings) -> AsyncIterator[Ports]:
    """Every adapter, connected; closed again when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        state = await stack.enter_async_context(open_state(settings))
        queue = make_queue(settings)
        stack.push_async_callback(queue.close)
        await queue.ensure_resources()
        prefix = settings.redis_prefix.rstrip(":") + ":"
        seen = RedisSeenSet.from_url(settings.redis_url, prefix=prefix, ttl_s=settings.seen_ttl_s)
        stack.push_async_callback(seen.close)
        limiter = RedisRateLimiter.from_url(settings.redis_url, prefix=prefix)
        stack.push_async_callback(limiter.close)
        blobs = make_blobs(settings)
        stack.push_async_callback(blobs.close)
        yield Ports(queue=queue, seen=seen, limiter=limiter, state=state, blobs=blobs)


async def submit(
    ports: Ports,
    workflow: Workflow,
    *,
    tenant: str = "default",
    source_text: str = "",
    params: dict[str, object] | None = None,
    queue_window: int = 0,
    recrawl: RecrawlSource | None = None,
) -> Execution:
    """Store ``workflow`` as a new version and start an execution of it
    (``worker/start.py``, as the orchestrator and ``trawl run`` do); with ``recrawl``, one
    that recrawls a previous execution (worker/recrawl.py)."""
    version = await store_workflow(ports.state, tenant, workflow, source_text)
    return await start_execution(
        ports,
        workflow,
        tenant=tenant,
        version=version,
        params=params,
        queue_window=queue_window,
        recrawl=recrawl,
    )
