"""PubSubTaskQueue: the TaskQueue of distributed mode, a Pub/Sub topic and pull subscription.

Publishing sends each ``publish`` call's tasks as one Publish request (or a few, past
Pub/Sub's 1,000 messages or 10 MB per request) straight through the client's generated API,
in a thread, with the client's retries; tasks are durable when it returns. Not through the
client's batching publisher: a frontier publishes a page's new links together already, and
the batcher's bookkeeping per message (flow control, a future and its callbacks, a commit
thread per batch) cost 100-2,000 us of CPU per task against ~12 us here
(bench/results/cpu-per-page-changes.md). Receiving is a streaming pull whose callback
runs on the client's stream thread, where the message arrived (``_InlineScheduler``): it
appends the message to a deque and wakes the event loop, once for all the messages that
arrive before the loop takes them, to move them into an asyncio.Queue. That and the
publish thread are the only places threads show.

Leases. The client extends the ack deadline of every message it holds (``lease management``)
in steps of ``ack_deadline_s``, the subscription's ack deadline, for as long as this process
holds the message; if the process dies, its messages come back within ``ack_deadline_s``. A
delivery handed out by ``receive`` is held for ``max_lease_s`` (the port's ack deadline);
a delivery not settled by then is presumed abandoned and handed back, as the port promises.
Long pages are therefore held up to ``max_lease_s``, and a crashed worker's tasks still
return in ``ack_deadline_s``.

Settling. ``ack`` is the client's batched ack. ``nack(delay_s)`` takes the message out of
lease management and sets its ack deadline to the delay (Pub/Sub has no per-message delay;
an expiring deadline is how a message comes back), capped at 600 s, Pub/Sub's maximum; a
``nack()`` without delay is a deadline of 0, delivered again at once. The deadline is set a
moment (``SETTLE_GRACE_S``) after the message leaves lease management: a lease extension the
client's lease thread had already started would otherwise land after it and undo the delay.

Lost resources. A streaming pull that ends because the subscription is gone (the emulator
restarted empty, an operator deleted it) raises a RetryableError from ``receive`` as any
ended stream does; the next ``receive`` re-creates the topics and subscriptions first, then
pulls again. A publish refused because the topic is gone does the same and publishes once
more. Messages the lost subscription held are gone with it: the reconciler re-publishes
their tasks (see worker/reconcile.py).

Delivery attempts are Pub/Sub's own when the subscription has a dead-letter policy (the
server counts them then); without one the server reports none, and the queue counts the
deliveries it handed out per message id itself, which sees only this process's deliveries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler
from google.pubsub_v1 import types as pubsub_types
from google.pubsub_v1.services.publisher import client as publisher_api

from backends.errors import InvalidInputError, PermanentError, RetryableError
from backends.queue import Delivery, QueueClosed, TaskQueue
from backends.task import Task, decode_task, encode_task

log = logging.getLogger(__name__)

MAX_MODACK_S = 600  # the longest ack deadline Pub/Sub accepts
SETTLE_GRACE_S = 0.5
# The client drops leases older than this (``FlowControl.max_lease_duration``), a safety net
# under the queue's own ``max_lease_s``.
CLIENT_MAX_LEASE_S = 4 * 3600.0
DEFAULT_RETENTION_S = 7 * 24 * 3600  # Pub/Sub's default and maximum
_MAX_COUNTED_MESSAGES = 100_000
_RETRYABLE = (
    google_exceptions.Aborted,
    google_exceptions.Cancelled,
    google_exceptions.DeadlineExceeded,
    google_exceptions.InternalServerError,
    google_exceptions.ResourceExhausted,
    google_exceptions.ServiceUnavailable,
    google_exceptions.Unknown,
)
# Names the client library's publish() reserves for its own arguments; never attributes.
_RESERVED_ATTRIBUTES = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})
# Pub/Sub's limits per Publish request are 1,000 messages and 10 MB; the envelope (topic,
# field tags) needs a little of the 10 MB.
MAX_MESSAGES_PER_REQUEST = 1000
MAX_BYTES_PER_REQUEST = 9_500_000
# The raw protobuf classes: building messages through the proto-plus wrappers costs
# several times more per message.
_RawMessage = pubsub_types.PubsubMessage.pb()
_RawRequest = pubsub_types.PublishRequest.pb()


@dataclass(slots=True, frozen=True)
class _Arrival:
    message: Any  # google.cloud.pubsub_v1.subscriber.message.Message
    arrived: float  # time.monotonic() when the client handed it over
    stream: int  # which streaming pull it came from


@dataclass(slots=True, frozen=True)
class _StreamEnded:
    error: BaseException | None


class _Closed:
    pass


_CLOSED = _Closed()
_Item = _Arrival | _StreamEnded | _Closed


class _PubSubDelivery(Delivery):
    __slots__ = ("_arrival", "_queue", "_settled", "_timer")

    def __init__(
        self, queue: PubSubTaskQueue, arrival: _Arrival, task: Task, delivery_attempt: int
    ) -> None:
        super().__init__(task, delivery_attempt)
        self._queue = queue
        self._arrival = arrival
        self._settled = False
        self._timer: asyncio.TimerHandle | None = None

    async def ack(self) -> None:
        self._queue._ack(self)

    async def nack(self, delay_s: float = 0.0) -> None:
        self._queue._nack(self, delay_s)


class PubSubTaskQueue(TaskQueue):
    """Tasks on ``topic``, received through ``subscription``, both in ``project``.

    ``concurrency`` is how many tasks the worker runs at once: it is the streaming pull's
    ``FlowControl.max_messages``, so the process holds about that many messages, handed out
    or waiting to be (Pub/Sub also stops sending at that many outstanding on the stream, and
    there a message nacked with a delay counts until its delay is over).
    ``dead_letter_topic`` with ``max_delivery_attempts`` gives the subscription a dead-letter
    policy. Clients passed in stay the caller's; clients the queue makes are closed by
    ``close``. ``receive`` starts the streaming pull on first use; ``ensure_resources``
    creates what is missing.
    """

    def __init__(
        self,
        project: str,
        topic: str,
        subscription: str,
        *,
        concurrency: int = 32,
        ack_deadline_s: int = 60,
        max_lease_s: float = 600.0,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 10,
        message_retention_s: int = DEFAULT_RETENTION_S,
        publish_timeout_s: float = 60.0,
        rpc_timeout_s: float = 30.0,
        publisher: pubsub_v1.PublisherClient | None = None,
        subscriber: pubsub_v1.SubscriberClient | None = None,
    ) -> None:
        _check(concurrency >= 1, f"concurrency must be >= 1, not {concurrency}")
        _check(
            10 <= ack_deadline_s <= MAX_MODACK_S,
            f"ack_deadline_s must be 10..{MAX_MODACK_S}, not {ack_deadline_s}",
        )
        _check(max_lease_s > 0, f"max_lease_s must be > 0, not {max_lease_s}")
        _check(
            5 <= max_delivery_attempts <= 100,
            f"max_delivery_attempts must be 5..100, not {max_delivery_attempts}",
        )
        _check(
            600 <= message_retention_s <= DEFAULT_RETENTION_S,
            f"message_retention_s must be 10 minutes..7 days, not {message_retention_s}",
        )
        self._owns_publisher = publisher is None
        self._owns_subscriber = subscriber is None
        retry = Retry(
            predicate=if_exception_type(*_RETRYABLE),
            initial=0.1,
            maximum=10.0,
            multiplier=1.3,
            timeout=publish_timeout_s,
        )
        self._publisher = publisher or pubsub_v1.PublisherClient()
        self._publish_retry = retry
        self._subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.project = project
        self.topic_path = self._publisher.topic_path(project, topic)
        self.subscription_path = self._subscriber.subscription_path(project, subscription)
        self.dead_letter_topic_path = (
            self._publisher.topic_path(project, dead_letter_topic) if dead_letter_topic else None
        )
        # Dead letters are kept by a subscription of the same name (a topic without one
        # drops what is published to it).
        self.dead_letter_subscription_path = (
            self._subscriber.subscription_path(project, dead_letter_topic)
            if dead_letter_topic
            else None
        )
        self.concurrency = concurrency
        self.ack_deadline_s = ack_deadline_s
        self.max_lease_s = max_lease_s
        self.max_delivery_attempts = max_delivery_attempts
        self.message_retention_s = message_retention_s
        self._publish_timeout_s = publish_timeout_s
        self._rpc_timeout_s = rpc_timeout_s
        self._admin_retry = retry.with_timeout(rpc_timeout_s)
        self._flow_control = pubsub_v1.types.FlowControl(
            max_messages=concurrency,
            max_lease_duration=CLIENT_MAX_LEASE_S,
            # Every extension is one ack deadline, so a dead process's messages return
            # within it (the default would grow the step with observed processing times).
            min_duration_per_lease_extension=ack_deadline_s,
            max_duration_per_lease_extension=ack_deadline_s,
        )

        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        # Messages the stream thread let go of, on their way to the inbox: the loop is
        # woken once for all those that arrive before it takes them (``_take_arrivals``).
        self._arrivals: deque[_Arrival] = deque()
        self._wake_pending = False
        self._stream: Any = None  # the StreamingPullFuture while a pull runs
        self._stream_id = 0
        self._leased: set[_PubSubDelivery] = set()
        self._pending_modacks: dict[str, tuple[asyncio.TimerHandle, Any, float]] = {}
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self._closed = False
        # Set when the subscription or topic was found missing: re-created before the next
        # streaming pull or publish.
        self._resources_lost = False
        # Calls by kind (publish calls and messages, receipts, acks, nacks): what a worker
        # reports when it stops, for capacity planning.
        self.calls: Counter[str] = Counter()
        self._close_lock = asyncio.Lock()

    @property
    def address(self) -> str:
        """Where the queue talks to: the emulator's host:port, or Pub/Sub's."""
        return str(self._publisher.target)

    # -- resources

    async def ensure_resources(self) -> None:
        """Create the topic, the dead-letter topic and its subscription, and the pull
        subscription, those that are missing. Existing ones are left as they are."""
        await asyncio.to_thread(self._guard_rpc, "set up topics and subscriptions", self._ensure)

    def _ensure(self) -> None:
        self._ensure_topic(self.topic_path)
        dead_letter_policy = None
        if self.dead_letter_topic_path and self.dead_letter_subscription_path:
            self._ensure_topic(self.dead_letter_topic_path)
            self._ensure_subscription(
                pubsub_types.Subscription(
                    name=self.dead_letter_subscription_path,
                    topic=self.dead_letter_topic_path,
                    expiration_policy=pubsub_types.ExpirationPolicy(),
                )
            )
            dead_letter_policy = pubsub_types.DeadLetterPolicy(
                dead_letter_topic=self.dead_letter_topic_path,
                max_delivery_attempts=self.max_delivery_attempts,
            )
        subscription = pubsub_types.Subscription(
            name=self.subscription_path,
            topic=self.topic_path,
            ack_deadline_seconds=self.ack_deadline_s,
            dead_letter_policy=dead_letter_policy,
            # An empty policy: the subscription never expires while idle (by default it
            # would after 31 days, and tasks published then would be lost).
            expiration_policy=pubsub_types.ExpirationPolicy(),
        )
        if self.message_retention_s != DEFAULT_RETENTION_S:
            # Only when it differs from Pub/Sub's default: the emulator, given any
            # retention, ignores deadlines set after a stream ended (close() needs them).
            subscription.message_retention_duration = timedelta(seconds=self.message_retention_s)
        self._ensure_subscription(subscription)

    def _ensure_topic(self, path: str) -> None:
        try:
            self._publisher.get_topic(
                topic=path, retry=self._admin_retry, timeout=self._rpc_timeout_s
            )
        except google_exceptions.NotFound:
            with contextlib.suppress(google_exceptions.AlreadyExists):
                self._publisher.create_topic(
                    name=path, retry=self._admin_retry, timeout=self._rpc_timeout_s
                )

    def _ensure_subscription(self, wanted: pubsub_types.Subscription) -> None:
        try:
            existing = self._subscriber.get_subscription(
                subscription=wanted.name, retry=self._admin_retry, timeout=self._rpc_timeout_s
            )
        except google_exceptions.NotFound:
            with contextlib.suppress(google_exceptions.AlreadyExists):
                self._subscriber.create_subscription(
                    request=wanted, retry=self._admin_retry, timeout=self._rpc_timeout_s
                )
            return
        # Left as it is (changing a live subscription is an operator's decision), but said.
        for field in ("topic", "ack_deadline_seconds", "dead_letter_policy"):
            if field in wanted and getattr(existing, field) != getattr(wanted, field):
                log.warning(
                    "subscription %s exists with %s=%s, not %s as configured; left as it is",
                    wanted.name,
                    field,
                    getattr(existing, field),
                    getattr(wanted, field),
                )

    # -- publishing

    async def publish(self, tasks: Sequence[Task]) -> None:
        if self._closed:
            raise QueueClosed("the queue is closed")
        if not tasks:
            return
        self.calls["publish_calls"] += 1
        self.calls["published"] += len(tasks)
        if self._resources_lost:
            await self.ensure_resources()
            self._resources_lost = False
        try:
            await self._publish(tasks)
        except RetryableError as exc:
            if not isinstance(exc.__cause__, google_exceptions.NotFound):
                raise
            # The topic is gone (an emulator restarted empty): set everything up again,
            # the subscription before any message, and publish once more.
            log.warning("topic %s is missing; re-creating it: %s", self.topic_path, exc)
            await self.ensure_resources()
            await self._publish(tasks)

    async def _publish(self, tasks: Sequence[Task]) -> None:
        messages = [_RawMessage(data=encode_task(t), attributes=_attributes(t)) for t in tasks]
        sent = 0
        for chunk in _requests(messages):
            try:
                # The client's retries end at publish_timeout_s; this only guards against a
                # call that never returns.
                await asyncio.wait_for(
                    asyncio.to_thread(self._send, chunk), self._publish_timeout_s + 30
                )
            except TimeoutError:
                raise RetryableError(
                    f"publishing {len(tasks)} tasks to {self.topic_path} at {self.address} "
                    "timed out",
                    error_class="pubsub_unavailable",
                ) from None
            except (
                google_exceptions.GoogleAPIError,
                auth_exceptions.TransportError,
                ValueError,
            ) as exc:
                raise RetryableError(
                    f"publishing to {self.topic_path} at {self.address} failed for "
                    f"{len(tasks) - sent} of {len(tasks)} tasks: {_describe(exc)}",
                    error_class="pubsub_unavailable",
                ) from exc
            sent += len(chunk)

    def _send(self, messages: list[Any]) -> None:
        """One Publish request, with the client's retries (on one of asyncio's threads)."""
        if self._closed:
            raise QueueClosed("the queue is closed")
        request = pubsub_types.PublishRequest.wrap(
            _RawRequest(topic=self.topic_path, messages=messages)
        )
        response = publisher_api.PublisherClient.publish(
            self._publisher,
            request=request,
            retry=self._publish_retry,
            timeout=min(self._publish_timeout_s, self._rpc_timeout_s),
        )
        if len(response.message_ids) != len(messages):
            raise ValueError(
                f"Pub/Sub acknowledged {len(response.message_ids)} of {len(messages)} messages"
            )

    # -- receiving

    async def receive(self) -> Delivery:
        while True:
            if self._closed:
                raise QueueClosed("the queue is closed")
            if self._resources_lost and self._stream is None:
                await self.ensure_resources()  # a RetryableError here: try again later
                self._resources_lost = False
            self._start_stream()
            item = await self._inbox.get()
            if isinstance(item, _Closed):
                self._inbox.put_nowait(item)  # for the next receiver
                raise QueueClosed("the queue is closed")
            if isinstance(item, _StreamEnded):
                raise RetryableError(
                    f"the streaming pull from {self.subscription_path} at {self.address} "
                    f"ended: {_describe(item.error) if item.error else 'closed'}",
                    error_class="pubsub_unavailable",
                )
            if item.stream != self._stream_id:
                # Its stream ended: its lease is no longer extended and it cannot be acked
                # through it. Pub/Sub delivers it again once the lease runs out.
                continue
            delivery = self._hand_out(item)
            if delivery is not None:
                return delivery

    def _start_stream(self) -> None:
        if self._stream is not None:
            return
        loop = asyncio.get_running_loop()
        self._stream_id += 1
        stream_id = self._stream_id

        def on_message(message: Any) -> None:  # on the client's stream thread
            self._arrivals.append(_Arrival(message, time.monotonic(), stream_id))
            if self._wake_pending:  # the loop has yet to take the ones before: it will
                return
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._take_arrivals)
            except RuntimeError:  # the loop is gone: hand the messages back
                while self._arrivals:
                    self._arrivals.popleft().message.nack()

        def on_done(future: Any) -> None:  # on one of the client's threads
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stream_ended, future, stream_id)

        self._stream = self._subscriber.subscribe(
            self.subscription_path,
            on_message,
            flow_control=self._flow_control,
            scheduler=_InlineScheduler(),
            # close() waits for callbacks in progress, so that every message the client
            # let go of is in the inbox by then and can be handed back.
            await_callbacks_on_shutdown=True,
        )
        self._stream.add_done_callback(on_done)

    def _take_arrivals(self) -> None:
        """On the loop: what the stream thread let go of goes into the inbox."""
        self._wake_pending = False  # before taking: a later arrival wakes the loop again
        while self._arrivals:
            self._inbox.put_nowait(self._arrivals.popleft())

    def _stream_ended(self, future: Any, stream_id: int) -> None:
        if self._closed or stream_id != self._stream_id:
            return
        error: BaseException | None = None
        if not future.cancelled():
            error = future.exception()
        if isinstance(error, google_exceptions.NotFound):
            self._resources_lost = True
        log.warning("streaming pull from %s ended: %s", self.subscription_path, error)
        self._stream = None  # the next receive() starts another
        self._inbox.put_nowait(_StreamEnded(error))

    def _hand_out(self, arrival: _Arrival) -> _PubSubDelivery | None:
        message = arrival.message
        if time.monotonic() - arrival.arrived > CLIENT_MAX_LEASE_S - self.ack_deadline_s:
            return None  # the client has stopped extending it; Pub/Sub will redeliver it
        try:
            task = decode_task(message.data)
        except InvalidInputError as exc:
            self._reject_poison(message, exc)
            return None
        attempt = message.delivery_attempt or self._count_attempt(message.message_id)
        delivery = _PubSubDelivery(self, arrival, task, attempt)
        self.calls["received"] += 1
        self._leased.add(delivery)
        delivery._timer = asyncio.get_running_loop().call_later(
            self.max_lease_s, self._expire, delivery
        )
        return delivery

    def _reject_poison(self, message: Any, exc: InvalidInputError) -> None:
        """A message that is not a task can never succeed. With a dead-letter policy it is
        handed back until Pub/Sub moves it to the dead-letter topic; without one it is
        dropped (acked), loudly."""
        if self.dead_letter_topic_path:
            log.error("message %s is not a task, handing it back: %s", message.message_id, exc)
            message.nack()
        else:
            log.error(
                "message %s is not a task and there is no dead-letter topic, dropping it: "
                "%s; data %r",
                message.message_id,
                exc,
                bytes(message.data[:200]),
            )
            message.ack()

    def _count_attempt(self, message_id: str) -> int:
        count = self._attempts.pop(message_id, 0) + 1
        self._attempts[message_id] = count
        if len(self._attempts) > _MAX_COUNTED_MESSAGES:
            self._attempts.popitem(last=False)
        return count

    # -- settling (called by deliveries, on the loop; no awaits, so each step is atomic)

    def _ack(self, delivery: _PubSubDelivery) -> None:
        self.calls["acks"] += 1
        if not self._settle(delivery):
            return
        message = delivery._arrival.message
        self._attempts.pop(message.message_id, None)
        message.ack()

    def _nack(self, delivery: _PubSubDelivery, delay_s: float) -> None:
        self.calls["nacks"] += 1
        if self._settle(delivery):
            self._hand_back(delivery._arrival.message, delay_s)

    def _expire(self, delivery: _PubSubDelivery) -> None:
        if self._settle(delivery):
            log.warning(
                "task %s was not settled within its lease; handing it back",
                delivery.task.url,
            )
            self._hand_back(delivery._arrival.message, 0.0)

    def _settle(self, delivery: _PubSubDelivery) -> bool:
        """Mark ``delivery`` settled; False if it was already (or expired, or closed)."""
        if delivery._settled:
            return False
        delivery._settled = True
        if delivery._timer is not None:
            delivery._timer.cancel()
            delivery._timer = None
        self._leased.discard(delivery)
        return True

    def _hand_back(self, message: Any, delay_s: float) -> None:
        """Stop extending ``message``'s lease now; set its deadline to the delay shortly."""
        message.drop()
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay_s)
        handle = loop.call_later(SETTLE_GRACE_S, self._set_deadline, message)
        self._pending_modacks[message.ack_id] = (handle, message, due)

    def _set_deadline(self, message: Any) -> None:
        entry = self._pending_modacks.pop(message.ack_id, None)
        if entry is not None:
            message.modify_ack_deadline(self._remaining_s(entry[2]))

    @staticmethod
    def _remaining_s(due: float) -> int:
        """Seconds from now to ``due`` (loop time), rounded up, within Pub/Sub's limits."""
        remaining = due - asyncio.get_running_loop().time()
        return min(MAX_MODACK_S, max(0, math.ceil(remaining)))

    # -- closing

    async def close(self) -> None:
        """Stop the streaming pull, hand back every message received and not settled
        (waiting in the inbox or handed out), and close the clients the queue made."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.put_nowait(_CLOSED)  # wakes waiting receivers
            # Stop the stream first: a message handed back while it still runs may be
            # delivered straight back into it, and stay there until its deadline.
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.cancel()
                with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                    await asyncio.to_thread(stream.result, self._rpc_timeout_s)
            # Every callback has run by now (await_callbacks_on_shutdown), so the inbox
            # holds everything the client let go of.
            deadlines: dict[int, list[str]] = {0: [m.ack_id for m in self._drain_inbox()]}
            for delivery in list(self._leased):
                self._settle(delivery)
                deadlines[0].append(delivery._arrival.message.ack_id)
            for handle, message, due in self._pending_modacks.values():
                handle.cancel()
                deadlines.setdefault(self._remaining_s(due), []).append(message.ack_id)
            self._pending_modacks.clear()
            if any(deadlines.values()):
                await asyncio.to_thread(self._modify_deadlines, deadlines)
            await asyncio.to_thread(self._close_clients)

    def _drain_inbox(self) -> list[Any]:
        """The messages of the current stream waiting in the inbox, taken out of it."""
        messages = []
        self._take_arrivals()
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, _Arrival) and item.stream == self._stream_id:
                messages.append(item.message)
        self._inbox.put_nowait(_CLOSED)
        return messages

    def _modify_deadlines(self, deadlines: dict[int, list[str]]) -> None:
        """Set deadlines directly (the streaming pull that would batch them has stopped);
        a failure only means the messages come back when their leases run out."""
        for seconds, ack_ids in deadlines.items():
            if not ack_ids:
                continue
            for start in range(0, len(ack_ids), 2500):  # Pub/Sub's limit per request
                try:
                    self._subscriber.modify_ack_deadline(
                        subscription=self.subscription_path,
                        ack_ids=ack_ids[start : start + 2500],
                        ack_deadline_seconds=seconds,
                        retry=self._admin_retry,
                        timeout=self._rpc_timeout_s,
                    )
                except Exception as exc:
                    log.warning(
                        "could not hand back %d messages to %s: %s",
                        len(ack_ids),
                        self.subscription_path,
                        exc,
                    )

    def _close_clients(self) -> None:
        if self._owns_publisher:
            with contextlib.suppress(RuntimeError):  # stopped already
                self._publisher.stop()
            self._publisher.transport.close()
        if self._owns_subscriber:
            self._subscriber.close()

    # -- readiness (what /readyz asks; nothing is created here)

    async def check_exists(self, *, subscription: bool) -> None:
        """PermanentError unless the pull subscription (or, ``subscription=False``, the
        topic) exists; RetryableError when Pub/Sub does not answer."""

        def get() -> None:
            try:
                if subscription:
                    self._subscriber.get_subscription(
                        subscription=self.subscription_path, timeout=self._rpc_timeout_s
                    )
                else:
                    self._publisher.get_topic(topic=self.topic_path, timeout=self._rpc_timeout_s)
            except google_exceptions.NotFound:
                what = self.subscription_path if subscription else self.topic_path
                kind = "subscription" if subscription else "topic"
                raise PermanentError(
                    f"{kind} {what} does not exist", error_class="pubsub_missing"
                ) from None

        await asyncio.to_thread(self._guard_rpc, "look up the subscription or topic", get)

    # -- errors

    def _guard_rpc(self, what: str, fn: Any) -> None:
        try:
            fn()
        except (google_exceptions.GoogleAPICallError, google_exceptions.RetryError) as exc:
            code = getattr(exc, "code", None)
            if isinstance(exc, (google_exceptions.RetryError, *_RETRYABLE)):
                raise RetryableError(
                    f"Pub/Sub at {self.address} unreachable (could not {what}): {_describe(exc)}",
                    error_class="pubsub_unavailable",
                ) from exc
            raise PermanentError(
                f"Pub/Sub at {self.address} refused to {what}: {code} {_describe(exc)}",
                error_class="pubsub_refused",
            ) from exc


class _InlineScheduler(Scheduler):  # type: ignore[misc]  # the library is untyped
    """Runs the client's message callback on the thread that received the message.

    The client's default scheduler hands each message to a pool of 10 threads, one thread
    switch per message, only for the callback to hand it to the event loop; ours is a
    deque append, so it runs where the message arrived and the loop is woken once per
    batch of arrivals. Nothing is ever left scheduled, so a shutdown drops nothing."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._queue

    def schedule(self, callback: Any, *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        return []


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidInputError(message)


def _attributes(task: Task) -> dict[str, str]:
    """The task's trace context as message attributes too, where tracing tools look for it.
    Entries Pub/Sub would refuse as attributes stay in the task body only."""
    return {
        key: value
        for key, value in task.trace.items()
        if key
        and key not in _RESERVED_ATTRIBUTES
        and not key.startswith("goog")
        and len(key.encode()) <= 256
        and len(value.encode()) <= 1024
    }


def _requests(messages: list[Any]) -> list[list[Any]]:
    """``messages`` in order, cut into Publish requests within Pub/Sub's limits."""
    requests: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for message in messages:
        nbytes = message.ByteSize() + 8  # the message, its field tag and length
        if current and (
            len(current) >= MAX_MESSAGES_PER_REQUEST or size + nbytes > MAX_BYTES_PER_REQUEST
        ):
            requests.append(current)
            current, size = [], 0
        current.append(message)
        size += nbytes
    if current:
        requests.append(current)
    return requests


def _describe(exc: BaseException) -> str:
    """The error and, for a RetryError (time ran out), the last error behind it."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, google_exceptions.RetryError) and cause is not None:
        return f"{exc.message}; last error: {type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {exc}"
