"""Webhooks: signing and verifying, the payload, the retry schedule, the sender over the
memory outbox (a real receiver on 127.0.0.1), the calls the ends of an execution owe, and
``trawl webhooks secret``."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from google.cloud import storage

from backends.clock import FakeClock, SystemClock
from backends.gcp.gcs import GcsBlobStore
from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore
from backends.state import WebhookDelivery
from tests.crawling import make_workflow
from tests.site import SiteServer
from tests.unit.test_worker_function import engines, memory_ports
from tests.webhook_receiver import Receiver, wait_until
from trawl.cli import main
from trawl.webhooks import InvalidSignature, sign, tenant_secret, verify
from worker.engines import Engines
from worker.netguard import NetGuard
from worker.reconcile import settle_cancel
from worker.runtime import WorkerOptions, run_until_idle
from worker.start import start_execution, store_workflow
from worker.webhooks import (
    WebhookOptions,
    WebhookSender,
    blob_uri,
    build_event,
    retry_delay_s,
)
from workflows import Workflow

__all__ = ["engines"]

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT_SECRET = "deployment-secret-for-tests"
SECRET = tenant_secret(DEPLOYMENT_SECRET, "acme")
BODY = b'{"event": "execution.completed", "execution_id": "ex-1"}'
T = 1_800_000_000


# -- signing and verifying


def test_a_signed_call_verifies_and_gives_its_payload() -> None:
    header = sign(SECRET, BODY, timestamp=T)
    assert header.startswith(f"t={T},v1=")
    payload = verify(SECRET, {"trawl-signature": header}, BODY, now=T + 10)
    assert payload == {"event": "execution.completed", "execution_id": "ex-1"}
    # A rotation may carry two signatures; one matching is enough. Text bodies work too.
    rotated = f"{header},v1={'0' * 64}"
    assert verify(SECRET, {"Trawl-Signature": rotated}, BODY.decode(), now=T) == payload


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        ({}, BODY, T, "no Trawl-Signature header"),
        ({"Trawl-Signature": "v1=abc"}, BODY, T, "must be t="),
        ({"Trawl-Signature": "t=soon,v1=abc"}, BODY, T, "t is not a number"),
        ({"Trawl-Signature": sign(SECRET, BODY, timestamp=T)}, BODY + b" ", T, "no signature"),
        ({"Trawl-Signature": sign(SECRET, BODY, timestamp=T)}, BODY, T + 301, "tolerance"),
        ({"Trawl-Signature": sign("whsec_other", BODY, timestamp=T)}, BODY, T, "no signature"),
    ],
)
def test_verify_refuses_what_was_not_signed_so(
    headers: dict[str, str], body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        verify(SECRET, headers, body, now=now)


def test_an_old_call_verifies_without_a_tolerance() -> None:
    header = sign(SECRET, BODY, timestamp=T)
    assert verify(SECRET, {"Trawl-Signature": header}, BODY, tolerance_s=0, now=T + 10**6)


def test_each_tenant_has_a_secret_of_its_own() -> None:
    assert SECRET.startswith("whsec_") and len(SECRET) == len("whsec_") + 64
    assert tenant_secret(DEPLOYMENT_SECRET, "acme") == SECRET  # derived, not stored
    assert tenant_secret(DEPLOYMENT_SECRET, "globex") != SECRET
    assert tenant_secret("another-deployment", "acme") != SECRET
    with pytest.raises(ValueError, match="TRAWL_WEBHOOK_SECRET"):
        tenant_secret("", "acme")


def test_receivers_import_only_the_standard_library() -> None:
    for module in ("trawl/webhooks.py", "worker/webhook_signing.py"):
        tree = ast.parse((ROOT / module).read_text())
        imported = {
            name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            if name
        }
        foreign = {
            n
            for n in imported
            if n.split(".")[0] not in sys.stdlib_module_names and n != "worker.webhook_signing"
        }
        assert foreign == set(), module


# -- the payload and the schedule


def test_retry_delays_double_from_one_second_up_to_an_hour() -> None:
    assert [retry_delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]
    assert retry_delay_s(20) == 3600
    assert retry_delay_s(10**6) == 3600


def test_a_blob_uri_names_the_bucket_or_the_file(tmp_path: Path) -> None:
    local = LocalBlobStore(tmp_path / "out")
    assert blob_uri(local, "ex/export/manifest.json") == (
        (tmp_path / "out" / "ex" / "export" / "manifest.json").as_uri()
    )
    client = storage.Client.create_anonymous_client()
    gcs = GcsBlobStore(client, "trawl-outputs", "prod/eu")
    assert blob_uri(gcs, "ex/export/manifest.json") == (
        "gs://trawl-outputs/prod/eu/ex/export/manifest.json"
    )
    assert blob_uri(GcsBlobStore(client, "b"), "x") == "gs://b/x"


async def test_the_payload_says_which_execution_ended_and_where_its_output_is(
    tmp_path: Path,
) -> None:
    ports = memory_ports(tmp_path)
    workflow = make_workflow(["http://127.0.0.1:9/"])
    version = await store_workflow(ports.state, "acme", workflow)
    execution = await start_execution(ports, workflow, tenant="acme", version=version)
    await ports.state.transition(execution.id, "cancelled", from_statuses={"running"})
    ended = await ports.state.get_execution(execution.id)
    assert ended is not None
    progress = await ports.state.progress(execution.id)
    event = build_event(ended, progress, records=0, blobs=ports.blobs)
    payload = json.loads(msgspec.json.encode(event))
    manifest = f"{execution.id}/export/manifest.json"
    assert payload == {
        "event": "execution.cancelled",
        "execution_id": execution.id,
        "tenant": "acme",
        "workflow": "test-crawl",
        "workflow_version": version,
        "status": "cancelled",
        "finished_at": payload["finished_at"],
        "pages": {"published": 1, "finished": 0, "succeeded": 0, "failed": 0, "filtered": 0},
        "records": 0,
        "manifest_path": manifest,
        "manifest_uri": (tmp_path / manifest).as_uri(),
        "records_path": f"/v1/executions/{execution.id}/records",
    }
    assert payload["finished_at"].endswith("Z")


# -- the sender


async def pending_call(store: MemoryStateStore, url: str, tenant: str = "acme") -> None:
    assert await store.enqueue_webhook("ex-1", tenant=tenant, url=url, payload=BODY.decode())


async def call_of(store: MemoryStateStore) -> WebhookDelivery:
    call = await store.get_webhook("ex-1")
    assert call is not None
    return call


def options(**changes: Any) -> WebhookOptions:
    """A sender's options: the test secret, loopback allowed, three attempts."""
    base = WebhookOptions(secret=DEPLOYMENT_SECRET, guard=NetGuard.allow_all(), max_attempts=3)
    return dataclasses.replace(base, **changes)


async def test_a_due_call_is_delivered_signed_once() -> None:
    store = MemoryStateStore()
    sender = WebhookSender(store, options())
    async with Receiver() as receiver:
        await pending_call(store, receiver.url("/hook"))
        try:
            assert await sender.deliver_due() == 1
            assert await sender.deliver_due() == 0
        finally:
            await sender.close()
    (call,) = receiver.calls
    assert verify(SECRET, call.headers, call.body) == json.loads(BODY)
    assert call.headers["Trawl-Delivery"] == "ex-1"
    assert call.headers["Trawl-Event"] == "execution.completed"
    assert call.headers["Content-Type"] == "application/json"
    delivered = await call_of(store)
    assert (delivered.status, delivered.attempts) == ("delivered", 1)


async def test_a_failing_receiver_is_retried_on_schedule_until_the_call_fails() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    sender = WebhookSender(store, options(), clock=clock)
    async with Receiver() as receiver:
        receiver.fail_first("/hook", 10)
        await pending_call(store, receiver.url("/hook"))
        try:
            for wait_s in (1.0, 2.0):
                assert await sender.deliver_due() == 1
                pending = await call_of(store)
                assert (pending.status, pending.last_error) == ("pending", "HTTP 500")
                assert pending.next_at == clock.wall() + timedelta(seconds=wait_s)
                clock.advance(wait_s - 0.5)
                assert await sender.deliver_due() == 0  # not due yet
                clock.advance(0.5)
            assert await sender.deliver_due() == 1
        finally:
            await sender.close()
    failed = await call_of(store)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 3, "HTTP 500")
    assert len(receiver.calls) == 3
    # Signed at the fake clock's time, long ago.
    assert all(verify(SECRET, c.headers, c.body, tolerance_s=0) for c in receiver.calls)


async def test_a_call_that_succeeds_on_its_third_attempt_is_delivered() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    sender = WebhookSender(store, options(max_attempts=8), clock=clock)
    async with Receiver() as receiver:
        receiver.fail_first("/hook", 2)
        await pending_call(store, receiver.url("/hook"))
        try:
            for wait_s in (1.0, 2.0, 0.0):
                assert await sender.deliver_due() == 1
                clock.advance(wait_s)
            clock.advance(3600)
            assert await sender.deliver_due() == 0
        finally:
            await sender.close()
    assert [c.status for c in receiver.calls] == [500, 500, 200]
    delivered = await call_of(store)
    assert (delivered.status, delivered.attempts, delivered.last_error) == ("delivered", 3, None)


async def test_a_url_the_guard_refuses_is_never_sent() -> None:
    store = MemoryStateStore()
    sender = WebhookSender(store, options(guard=NetGuard()))  # a worker's default policy
    async with Receiver() as receiver:
        await pending_call(store, receiver.url("/hook"))
        try:
            assert await sender.deliver_due() == 1
        finally:
            await sender.close()
    assert receiver.calls == []
    failed = await call_of(store)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.last_error is not None
    assert "127.0.0.1 is a loopback address" in failed.last_error
    assert "TRAWL_ALLOW_NETWORKS" in failed.last_error


async def test_without_the_deployment_secret_nothing_is_sent_unsigned() -> None:
    store = MemoryStateStore()
    sender = WebhookSender(store, options(secret=""))
    async with Receiver() as receiver:
        await pending_call(store, receiver.url("/hook"))
        assert await sender.deliver_due() == 1
    assert receiver.calls == []
    failed = await call_of(store)
    assert failed.status == "failed"
    assert failed.last_error == "TRAWL_WEBHOOK_SECRET is not set on the worker"


async def test_a_receiver_that_does_not_answer_is_retried() -> None:
    store = MemoryStateStore()
    sender = WebhookSender(store, options())
    # A port nothing listens on: the connection is refused.
    async with Receiver() as receiver:
        url = receiver.url("/hook")
    await pending_call(store, url)
    try:
        assert await sender.deliver_due() == 1
    finally:
        await sender.close()
    pending = await call_of(store)
    assert pending.status == "pending" and pending.attempts == 1
    assert pending.last_error is not None and "Connect" in pending.last_error


async def delivered(store: MemoryStateStore) -> bool:
    return (await call_of(store)).status == "delivered"


async def test_the_sender_sends_at_once_when_kicked_and_stops_when_told() -> None:
    store = MemoryStateStore()
    sender = WebhookSender(store, options(), poll_s=3600.0)
    stop = asyncio.Event()
    async with Receiver() as receiver:
        running = asyncio.create_task(sender.run(stop))
        await pending_call(store, receiver.url("/hook"))
        sender.kick()
        await wait_until(lambda: delivered(store), deadline_s=10, what="the kicked call delivered")
        stop.set()
        async with asyncio.timeout(10):
            await running
    assert len(receiver.calls) == 1


# -- the ends of an execution owe a call


def webhook_workflow(site: SiteServer, url: str | None) -> Workflow:
    extra = {"webhook": {"url": url}} if url is not None else {}
    return make_workflow([site.url("/product/1?case=webhook")], max_depth=0, **extra)


async def test_a_worker_completing_an_execution_owes_its_one_call(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    async with Receiver() as receiver:
        workflow = webhook_workflow(site, receiver.url("/workflow"))
        version = await store_workflow(ports.state, "acme", workflow)
        own = await start_execution(
            ports,
            workflow,
            tenant="acme",
            version=version,
            params={"webhook": receiver.url("/own")},
        )
        plain = await start_execution(ports, workflow, tenant="acme", version=version)
        # A worker that sends none: it returns when idle, which could stop a call midway
        # (leaving it claimed); the calls it owes are in the outbox, for any worker to send.
        async with asyncio.timeout(60):
            await run_until_idle(
                ports, fetchers=engines.fetchers, robots=engines.robots, options=WorkerOptions()
            )
            for execution_id in (own.id, plain.id):
                owed = await ports.state.get_webhook(execution_id)
                assert owed is not None and (owed.status, owed.attempts) == ("pending", 0)
            sender = WebhookSender(ports.state, options(), clock=SystemClock())
            try:
                assert await sender.deliver_due() == 2
            finally:
                await sender.close()
    by_path = {c.path: c for c in receiver.calls}
    assert sorted(c.path for c in receiver.calls) == ["/own", "/workflow"]
    own_payload = verify(SECRET, by_path["/own"].headers, by_path["/own"].body)
    assert own_payload["execution_id"] == own.id
    assert own_payload["event"] == "execution.completed"
    assert own_payload["pages"]["succeeded"] == 1 and own_payload["records"] == 1
    plain_payload = verify(SECRET, by_path["/workflow"].headers, by_path["/workflow"].body)
    assert plain_payload["execution_id"] == plain.id
    for execution_id in (own.id, plain.id):
        call = await ports.state.get_webhook(execution_id)
        assert call is not None and call.status == "delivered"


async def test_an_execution_naming_no_webhook_owes_no_call(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    workflow = webhook_workflow(site, None)
    version = await store_workflow(ports.state, "acme", workflow)
    execution = await start_execution(ports, workflow, tenant="acme", version=version)
    async with asyncio.timeout(60):
        await run_until_idle(ports, fetchers=engines.fetchers, robots=engines.robots)
    done = await ports.state.get_execution(execution.id)
    assert done is not None and done.status == "completed"
    assert await ports.state.get_webhook(execution.id) is None


async def test_a_settled_cancel_owes_its_call(tmp_path: Path) -> None:
    ports = memory_ports(tmp_path)
    workflow = make_workflow(
        ["http://127.0.0.1:9/"], webhook={"url": "https://hooks.example/trawl"}
    )
    version = await store_workflow(ports.state, "acme", workflow)
    execution = await start_execution(ports, workflow, tenant="acme", version=version)
    assert await ports.state.transition(execution.id, "cancelled", from_statuses={"running"})
    now = SystemClock().wall()
    assert await settle_cancel(ports.state, ports.blobs, execution.id, now=now)
    call = await ports.state.get_webhook(execution.id)
    assert call is not None
    assert (call.url, call.tenant, call.status) == (
        "https://hooks.example/trawl",
        "acme",
        "pending",
    )
    payload = json.loads(call.payload)
    assert (payload["event"], payload["status"]) == ("execution.cancelled", "cancelled")
    # Settling again (a command, the orchestrator, a sweep) owes nothing more.
    assert await settle_cancel(ports.state, ports.blobs, execution.id, now=now)
    assert await ports.state.get_webhook(execution.id) == call


# -- trawl webhooks secret


def test_the_command_prints_a_tenants_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("TRAWL_WEBHOOK_SECRET", DEPLOYMENT_SECRET)
    assert main(["webhooks", "secret", "--tenant", "acme"]) == 0
    assert capsys.readouterr().out.strip() == SECRET
    monkeypatch.delenv("TRAWL_WEBHOOK_SECRET")
    assert main(["webhooks", "secret", "--tenant", "acme"]) != 0
    assert "TRAWL_WEBHOOK_SECRET is not set" in capsys.readouterr().err
