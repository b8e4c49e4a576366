"""Webhooks: one signed POST per ended execution to the URL it names, retried with backoff.

Where. A workflow may name ``webhook: {url: ...}``; a start through the API may name its own
(kept in the execution's ``params["webhook"]``), which wins. The orchestrator checks the URL
with the SSRF guard at start; the sender checks it again before every attempt.

When. The process whose compare-and-set ends an execution owes its call, once the export is
written: ``Completion.check`` for a completed execution, ``settle_cancel`` for a cancelled
one. It enqueues the call in the StateStore's outbox (``WebhookOutbox``), which keeps one per
execution however often it is asked, with the payload fixed then (``WebhookEvent``).

Sending. Each distributed worker's supervisor runs a ``WebhookSender``. It claims due calls
(a claim moves the call's next attempt a lease ahead, so one worker sends a call at a time
and a dead one's call is due again after the lease), checks the URL with the SSRF guard
(a refused URL fails the call at once: it is never sent), signs the body with the tenant's
secret (``worker/webhook_signing.py``) and POSTs it, 10 s at most, redirects not followed,
through a connector that connects only to the addresses the guard checked. A 2xx delivers
the call; anything else is retried after 1 s, 2 s, 4 s... until ``max_attempts``, then the
call has failed and is logged. The worker that enqueues a call is woken at once, so the
first attempt does not wait for a poll; every worker polls for due calls each sweep
interval, which picks up the calls of a worker that died and those an orchestrator or a
command enqueued (a cancel they settled).

A call is made once, unless a worker dies between a 2xx and recording it: then it is made
again after the lease. ``Trawl-Delivery`` (the execution id) lets a receiver tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock, SystemClock
from backends.errors import PermanentError
from backends.state import Execution, Progress, StateStore, WebhookDelivery, WebhookOutbox
from worker.context import execution_workflow
from worker.fetchers.http import guarded_connector
from worker.netguard import BlockedAddressError, NetGuard
from worker.paths import manifest_path
from worker.webhook_signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SECRET_SETTING,
    SIGNATURE_HEADER,
    sign,
    tenant_secret,
)
from workflows.version import __version__

log = logging.getLogger("trawl.worker")

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_TIMEOUT_S = 10.0
RETRY_BASE_S = 1.0  # after attempt n fails: RETRY_BASE_S * 2^(n-1)
MAX_RETRY_DELAY_S = 3600.0
CLAIM_BATCH = 16  # calls claimed, and sent side by side, at a time
LEASE_MARGIN_S = 30.0  # a claim lasts the request's timeout and this
# A retry's wake-up comes this late, so the store (whose clock is the wall's) finds it due:
# a timer may fire a little early.
WAKE_SLACK_S = 0.1
USER_AGENT = f"trawl/{__version__} webhooks"

EVENTS = {
    "completed": "execution.completed",
    "cancelled": "execution.cancelled",
    "failed": "execution.failed",
}


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body of a call: which execution ended and how, and where its output is
    (docs/webhooks.md)."""

    event: str
    execution_id: str
    tenant: str
    workflow: str
    workflow_version: int
    status: str
    finished_at: datetime | None
    pages: dict[str, int]
    records: int
    manifest_path: str  # the export's manifest, in the deployment's blob store
    manifest_uri: str  # the same, as a URI (gs://bucket/prefix/...)
    records_path: str  # the API route that streams the records


def records_api_path(execution_id: str) -> str:
    return f"/v1/executions/{execution_id}/records"


def blob_uri(blobs: BlobStore, path: str) -> str:
    """Where a reader outside Trawl finds object ``path`` of ``blobs``: ``gs://bucket/prefix
    path`` in GCS, a ``file://`` URI in a local directory, else the name itself."""
    bucket = getattr(blobs, "bucket_name", None)
    if isinstance(bucket, str):
        return f"gs://{bucket}/{getattr(blobs, 'prefix', '') or ''}{path}"
    root = getattr(blobs, "root", None)
    if isinstance(root, Path):
        return (root / path).absolute().as_uri()
    return path


def build_event(
    execution: Execution, progress: Progress, *, records: int, blobs: BlobStore
) -> WebhookEvent:
    """The payload announcing that ``execution`` (in its final status) ended."""
    manifest = manifest_path(execution.id)
    return WebhookEvent(
        event=EVENTS.get(execution.status, f"execution.{execution.status}"),
        execution_id=execution.id,
        tenant=execution.tenant,
        workflow=execution.workflow,
        workflow_version=execution.workflow_version,
        status=execution.status,
        finished_at=execution.finished_at,
        pages=progress.pages(),
        records=records,
        manifest_path=manifest,
        manifest_uri=blob_uri(blobs, manifest),
        records_path=records_api_path(execution.id),
    )


async def webhook_url(state: StateStore, execution: Execution) -> str | None:
    """The URL ``execution`` calls when it ends: its start's own, else its workflow's (with
    its overrides), else None."""
    requested = execution.params.get("webhook")
    if isinstance(requested, str) and requested:
        return requested
    stored = await state.get_workflow(
        execution.tenant, execution.workflow, execution.workflow_version
    )
    if stored is None:
        return None
    webhook = execution_workflow(execution, stored.spec_json).webhook
    return None if webhook is None else webhook.url


async def enqueue_call(
    state: StateStore, blobs: BlobStore, execution: Execution, *, records: int
) -> bool:
    """Enqueue the call ``execution`` owes now that it has ended and its export is written
    (nothing when it names no URL); True if this enqueued it. Never raises: the execution
    has ended whatever happens here, and a failure is logged."""
    try:
        url = await webhook_url(state, execution)
        if url is None:
            return False
        progress = await state.progress(execution.id)
        event = build_event(execution, progress, records=records, blobs=blobs)
        payload = msgspec.json.encode(event).decode()
        return await state.enqueue_webhook(
            execution.id, tenant=execution.tenant, url=url, payload=payload
        )
    except Exception as exc:  # the ending stands; say loudly what was lost
        log.error("webhook not enqueued: %s", exc, extra={"execution_id": execution.id})
        return False


def retry_delay_s(attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, ...): 1 s, 2 s, 4 s...,
    at most an hour."""
    exponent = min(max(attempt - 1, 0), 32)
    return min(RETRY_BASE_S * float(2**exponent), MAX_RETRY_DELAY_S)


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """How a worker sends calls. ``secret`` is the deployment's (TRAWL_WEBHOOK_SECRET):
    without it every call fails, since none is ever sent unsigned."""

    secret: str = ""
    guard: NetGuard = field(default_factory=NetGuard)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: delivered, or why not and whether trying again is pointless."""

    delivered: bool
    error: str | None = None
    final: bool = False


class WebhookSender:
    """Sends the due calls of ``outbox``: woken by ``kick`` and every ``poll_s``."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        options: WebhookOptions,
        *,
        poll_s: float = 15.0,
        clock: Clock | None = None,
    ) -> None:
        self._outbox = outbox
        self.options = options
        self._poll_s = poll_s
        self._clock = clock or SystemClock()
        self._kicked = asyncio.Event()
        self._next_due: float | None = None  # on the clock's monotonic time
        self._session: aiohttp.ClientSession | None = None

    def kick(self) -> None:
        """Look for due calls now (this process has just enqueued one)."""
        self._kicked.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send due calls until ``stop`` is set: at once when kicked, when a retry of this
        worker's falls due, and every ``poll_s``."""
        try:
            while not stop.is_set():
                await self._wait(stop)
                if stop.is_set():
                    return
                try:
                    await self.deliver_due()
                except Exception as exc:  # a backend hiccup: the next round tries again
                    log.warning("webhook round failed: %s", exc)
        finally:
            await self.close()

    async def _wait(self, stop: asyncio.Event) -> None:
        timeout = self._poll_s
        if self._next_due is not None:
            timeout = min(timeout, max(self._next_due + WAKE_SLACK_S - self._clock.now(), 0.0))
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._kicked.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._kicked.clear()

    async def deliver_due(self) -> int:
        """Attempt every call that is due, a batch at a time; how many were attempted."""
        if self._next_due is not None and self._clock.now() >= self._next_due:
            self._next_due = None  # due now: this round takes it
        attempted = 0
        lease_s = self.options.timeout_s + LEASE_MARGIN_S
        while True:
            claimed = await self._outbox.claim_webhooks(limit=CLAIM_BATCH, lease_s=lease_s)
            results = await asyncio.gather(
                *(self._attempt(d) for d in claimed), return_exceptions=True
            )
            for delivery, result in zip(claimed, results, strict=True):
                if isinstance(result, BaseException):  # its claim lapses; tried again then
                    log.warning(
                        "webhook attempt not recorded: %s",
                        result,
                        extra={"execution_id": delivery.execution_id},
                    )
            attempted += len(claimed)
            if len(claimed) < CLAIM_BATCH:
                return attempted

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        outcome = await self.send(delivery)
        attempt = delivery.attempts
        retry_at = None
        delay = retry_delay_s(attempt)
        if not outcome.delivered and not outcome.final and attempt < self.options.max_attempts:
            retry_at = self._clock.wall() + timedelta(seconds=delay)
            due = self._clock.now() + delay
            self._next_due = due if self._next_due is None else min(self._next_due, due)
        await self._outbox.record_webhook_attempt(
            delivery.execution_id,
            attempt=attempt,
            delivered=outcome.delivered,
            error=outcome.error,
            retry_at=retry_at,
        )
        extra = {"execution_id": delivery.execution_id, "attempt": attempt}
        if outcome.delivered:
            log.info("webhook delivered", extra=extra)
        elif retry_at is not None:
            log.warning(
                "webhook attempt failed, retrying in %g s: %s", delay, outcome.error, extra=extra
            )
        else:
            log.error(
                "webhook failed for good after %d attempt(s): %s",
                attempt,
                outcome.error,
                extra=extra,
            )

    async def send(self, delivery: WebhookDelivery) -> Outcome:
        """One attempt at ``delivery``: the guard's check, then the signed POST."""
        if not self.options.secret:
            return Outcome(False, f"{SECRET_SETTING} is not set on the worker", final=True)
        try:
            await self.options.guard.check_url(delivery.url)
        except BlockedAddressError as exc:
            return Outcome(False, str(exc), final=True)
        except PermanentError as exc:  # a host that does not resolve may resolve later
            return Outcome(False, str(exc), final=exc.error_class != "dns")
        body = delivery.payload.encode()
        secret = tenant_secret(self.options.secret, delivery.tenant)
        timestamp = int(self._clock.wall().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, body, timestamp=timestamp),
            DELIVERY_HEADER: delivery.execution_id,
            EVENT_HEADER: _event_of(delivery.payload),
        }
        return await self._post(delivery.url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=guarded_connector(self.options.guard))
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                status = response.status
        except BlockedAddressError as exc:  # the connector's own check, at connect time
            return Outcome(False, str(exc), final=True)
        except TimeoutError:
            return Outcome(False, f"no answer within {self.options.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Outcome(True)
        redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Outcome(False, f"HTTP {status}{redirect}")

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None


def _event_of(payload: str) -> str:
    try:
        event = msgspec.json.decode(payload).get("event")
    except (msgspec.DecodeError, AttributeError):
        return ""
    return event if isinstance(event, str) else ""
