"""Dead letters: tasks Pub/Sub gave up on after ``max_delivery_attempts`` (a page that
crashes its worker every time, say). They are still registered and unfinished, so their
execution cannot complete until they are replayed onto the task topic (``trawl failures
replay ID``), where workers try them again with a fresh delivery count.

Dead letters of other executions are held (their ack deadline extended) while the
subscription is read, then released, so one pass sees each message once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
from google.api_core import exceptions as google_exceptions
from google.cloud import pubsub_v1

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError, RetryableError
from backends.gcp.pubsub import PubSubTaskQueue
from backends.task import Task, decode_task

PULL_BATCH = 100
HOLD_S = 120  # how long messages of other executions are held while the pass goes on


@dataclass(frozen=True, slots=True)
class Replay:
    replayed: int  # published back onto the task topic, acknowledged on the dead letters
    other_executions: int  # left where they were
    unreadable: int  # not a task (left for a person to look at)


async def replay_dead_letters(
    queue: PubSubTaskQueue,
    execution_id: str,
    *,
    limit: int = 100_000,
    subscriber: Any = None,
    pull_timeout_s: float = 5.0,
    clock: Clock | None = None,
) -> Replay:
    """Move ``execution_id``'s dead letters back onto ``queue``'s topic."""
    path = queue.dead_letter_subscription_path
    if path is None:
        raise InvalidInputError(
            "this deployment has no dead-letter topic (TRAWL_PUBSUB_DEAD_LETTER_TOPIC)"
        )
    client = subscriber or pubsub_v1.SubscriberClient()
    held: list[str] = []
    replayed = others = unreadable = 0
    try:
        while replayed < limit:
            messages = await asyncio.to_thread(_pull, client, path, pull_timeout_s)
            if not messages:
                break
            mine: list[tuple[str, Task]] = []
            keep: list[str] = []
            for received in messages:
                try:
                    task = decode_task(received.message.data)
                except InvalidInputError:
                    unreadable += 1
                    keep.append(received.ack_id)
                    continue
                if task.execution_id == execution_id and replayed + len(mine) < limit:
                    mine.append((received.ack_id, task))
                else:
                    others += 1
                    keep.append(received.ack_id)
            if mine:
                now = (clock or SystemClock()).wall().timestamp()
                await queue.publish([msgspec.structs.replace(t, published_at=now) for _, t in mine])
                ack_ids = [ack_id for ack_id, _ in mine]
                await asyncio.to_thread(
                    client.acknowledge, request={"subscription": path, "ack_ids": ack_ids}
                )
                replayed += len(mine)
            if keep:  # out of the way until the pass is over
                await asyncio.to_thread(_modack, client, path, keep, HOLD_S)
                held.extend(keep)
    finally:
        if held:  # let them go again: they belong to other executions
            await asyncio.to_thread(_modack, client, path, held, 0)
        if subscriber is None:
            client.close()
    return Replay(replayed, others, unreadable)


def _pull(client: Any, path: str, timeout_s: float) -> list[Any]:
    try:
        response = client.pull(
            request={"subscription": path, "max_messages": PULL_BATCH}, timeout=timeout_s
        )
    except google_exceptions.DeadlineExceeded:
        return []  # nothing there
    except google_exceptions.GoogleAPICallError as exc:
        raise RetryableError(
            f"reading the dead letters at {path} failed: {exc}", error_class="pubsub_unavailable"
        ) from exc
    return list(response.received_messages)


def _modack(client: Any, path: str, ack_ids: list[str], seconds: int) -> None:
    for start in range(0, len(ack_ids), 1000):
        client.modify_ack_deadline(
            request={
                "subscription": path,
                "ack_ids": ack_ids[start : start + 1000],
                "ack_deadline_seconds": seconds,
            }
        )
