"""The TaskQueue port: publish tasks, receive them one delivery at a time.

Delivery is at least once. A delivery that is neither acked nor nacked before its ack
deadline is delivered again (its worker is presumed dead), so a consumer acks only once the
task's effects are durable.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from backends.errors import TrawlError
from backends.task import Task


class QueueClosed(TrawlError):
    """The queue was closed: stop consuming (raised by ``receive`` and ``publish``)."""

    error_class = "queue_closed"


class Delivery(abc.ABC):
    """One delivery of a task. Settle it exactly once with ``ack`` or ``nack``; settling
    a delivery whose ack deadline has passed is ignored (the task was or will be delivered
    again)."""

    __slots__ = ("delivery_attempt", "task")

    def __init__(self, task: Task, delivery_attempt: int) -> None:
        self.task = task
        # 1 on the first delivery; grows with nacks and expired deadlines.
        self.delivery_attempt = delivery_attempt

    @abc.abstractmethod
    async def ack(self) -> None:
        """The task is done; never deliver it again."""

    @abc.abstractmethod
    async def nack(self, delay_s: float = 0.0) -> None:
        """Deliver the task again, no sooner than ``delay_s`` from now (backoff, never a
        hot loop of immediate redeliveries)."""


class TaskQueue(abc.ABC):
    """Tasks of every execution, shared by all workers."""

    @abc.abstractmethod
    async def publish(self, tasks: Sequence[Task]) -> None:
        """Enqueue ``tasks``; when this returns they are durable (as the backend allows)."""

    @abc.abstractmethod
    async def receive(self) -> Delivery:
        """The next deliverable task, waiting until there is one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop: waiting and later ``receive`` calls raise QueueClosed."""
