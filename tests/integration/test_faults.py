"""The fault matrix: a distributed crawl survives each backend and worker fault mid-crawl.

Two ``trawl worker`` processes crawl a generated shop of a few hundred pages over the real
services: a Redis, a PgBouncer and a Pub/Sub emulator of this module's own (so they can be
crashed without disturbing anyone), and the shared GCS emulator behind a TCP proxy the test
can cut. When about a third of the pages are done, one fault strikes:

- ``redis``: Redis crashes and comes back empty (every seen key and rate bucket lost);
- ``pgbouncer``: PgBouncer crashes and comes back (every client connection dropped);
- ``pubsub``: the Pub/Sub emulator crashes and comes back empty (topics, subscriptions
  and queued tasks lost: the workers re-create them, the reconciler re-publishes the tasks);
- ``gcs``: GCS is unreachable for 20 s;
- ``sigkill`` / ``sigterm``: a worker is killed, or stopped, and a replacement started.

Each time the execution still completes with exactly the export of a clean run of the same
crawl (records by URL and content, timing fields aside), and the workers that were not
struck are still the same processes: they recovered on their own.

The Pub/Sub emulator (0.8.20) keeps sending to closed streaming pulls for about a minute
after a client went away (``NoSuchMethodError ... onRstStreamRead`` in its log); messages
sent there come back only when their ack deadline passes, so the deadlines allow for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends.errors import RetryableError
from backends.gcp import PubSubTaskQueue
from backends.queue import Delivery
from backends.task import Task, encode_task
from examples.aqua.generate import Site, build_site, expected, expected_counts
from examples.aqua.server import serve
from tests.cluster import Cluster, cluster_env, completed, wait_for_execution
from tests.services import env_restored, free_port
from tests.services.gcs import delete_bucket, ensure_gcs
from tests.services.postgres import PgBouncer, TestDatabase, ensure_postgres, postgres_database
from tests.services.proxy import TcpProxy
from tests.services.pubsub import PubSubEmulator, unique_names
from tests.services.redis import RedisServer

__all__ = ["postgres_database"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

AQUA_HTTP = Path(__file__).resolve().parents[2] / "examples" / "aqua" / "aqua-http.yaml"
# About 265 pages: enough that a third of them is a real mid-crawl, small enough to be quick.
SITE_ARGS: dict[str, Any] = {"n_categories": 6, "products_per_category": (30, 45)}
SETS = ("politeness.requests_per_second=40",)
GCS_OUTAGE_S = 20.0
# A task registered but unfinished this long with no live lease is re-published.
RECONCILE_AFTER_S = "5"


# -- the deployment


@dataclass
class Stack:
    """The services of this module: private ones to crash, a proxy to cut."""

    redis: RedisServer
    bouncer: PgBouncer
    pubsub: PubSubEmulator
    gcs: TcpProxy
    database: TestDatabase

    @property
    def database_url(self) -> str:
        return self.database.dsn.replace(":6432/", f":{self.bouncer.port}/")


@pytest.fixture(scope="module")
def stack(postgres_database: TestDatabase) -> Iterator[Stack]:
    ensure_postgres()
    gcs_port = int(ensure_gcs().rsplit(":", 1)[1])
    bouncer = PgBouncer.create(free_port())
    bouncer.start()
    try:
        with RedisServer() as redis, PubSubEmulator() as pubsub, TcpProxy(gcs_port) as gcs:
            yield Stack(redis, bouncer, pubsub, gcs, postgres_database)
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[Site, str]]:
    """The shop, served on a thread of its own: it answers while the test's loop is busy."""
    site = build_site(**SITE_ARGS)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    base: list[str] = []
    stopping = asyncio.Event()

    async def run() -> None:
        async with serve(site, "127.0.0.1") as url:
            base.append(url)
            started.set()
            await stopping.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the shop did not start within 30 s")
    try:
        yield site, base[0]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def deployment(stack: Stack, logs: Path, **extra: str) -> Iterator[Cluster]:
    with cluster_env(
        database_url=stack.database_url,
        redis_url=stack.redis.url,
        pubsub_host=stack.pubsub.address,
        gcs_endpoint=f"http://{stack.gcs.address}",
        logs=logs,
        TRAWL_RECONCILE_AFTER_S=RECONCILE_AFTER_S,
        **extra,
    ) as cluster:
        try:
            yield cluster
        finally:
            _delete_bucket(stack, cluster.env["TRAWL_GCS_BUCKET"])


def _delete_bucket(stack: Stack, name: str) -> None:
    """The shared GCS emulator keeps everything in memory: leave nothing behind."""
    from backends.gcp import make_storage_client

    with env_restored("STORAGE_EMULATOR_HOST"):
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://{stack.gcs.address}"
        client = make_storage_client()
    try:
        delete_bucket(client, name)
    finally:
        client.close()


def export_by_url(cluster: Cluster, execution_id: str) -> dict[str, dict[str, Any]]:
    """The export's records by URL, without the fields that differ from run to run; a URL
    exported twice is an error."""
    by_url: dict[str, dict[str, Any]] = {}
    for record in cluster.records(execution_id):
        record.pop("execution_id", None)
        record.pop("fetched_at", None)
        record.pop("parent_url", None)
        assert len(record.pop("content_hash")) == 64, record["url"]  # the page's HTML's
        assert record["url"] not in by_url, f"{record['url']} exported twice"
        by_url[record["url"]] = record
    return by_url


async def crawl(
    cluster: Cluster,
    base: str,
    *,
    fault: Fault | None = None,
    stack: Stack | None = None,
    third: int = 0,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Submit the crawl, run two workers, strike ``fault`` once ``third`` pages are done;
    the execution id and its export once it completed."""
    execution_id = cluster.submit(AQUA_HTTP, f"start_urls=[{base}/]", *SETS)
    for _ in range(2):
        cluster.start_worker()
    deadline_s = 90.0
    if fault is not None:
        execution, progress = await wait_for_execution(
            cluster,
            execution_id,
            until=lambda e, p: p.finished >= third or completed(e, p),
            deadline_s=60,
        )
        assert not completed(execution, progress), (
            f"fault {fault.name}: the crawl ended before the fault could strike"
        )
        assert stack is not None
        await asyncio.to_thread(fault.inject, stack, cluster)
        deadline_s = fault.deadline_s
    what = f"fault {fault.name}" if fault else "clean run"
    try:
        execution, progress = await wait_for_execution(
            cluster, execution_id, until=completed, deadline_s=deadline_s
        )
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None
    assert execution.status == "completed", (
        f"{what}: execution {execution.status} "
        f"({progress.finished}/{progress.published})\n{cluster.all_logs()}"
    )
    return execution_id, export_by_url(cluster, execution_id)


# -- the faults


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Stack, Cluster], None]  # blocking: runs on a thread
    deadline_s: float = 90.0  # for the execution to complete after the fault
    struck: int | None = None  # the worker the fault takes down, if any
    env: tuple[tuple[str, str], ...] = ()  # worker settings for this fault's crawl
    # A line some worker must log: evidence the fault did what it is meant to.
    evidence: str | None = None


def _restart_redis(stack: Stack, _cluster: Cluster) -> None:
    stack.redis.restart()


def _restart_pgbouncer(stack: Stack, _cluster: Cluster) -> None:
    stack.bouncer.restart(kill=True)


def _restart_pubsub(stack: Stack, _cluster: Cluster) -> None:
    stack.pubsub.restart()


def _cut_gcs(stack: Stack, _cluster: Cluster) -> None:
    stack.gcs.cut()
    try:
        time.sleep(GCS_OUTAGE_S)  # the outage itself, not a wait for something
    finally:
        stack.gcs.restore()


def _kill_worker(stack: Stack, cluster: Cluster) -> None:
    cluster.workers[0].kill()
    cluster.workers[0].wait(10)
    cluster.start_worker()


def _stop_worker(stack: Stack, cluster: Cluster) -> None:
    worker = cluster.workers[0]
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(30)
    assert code == 0, f"a SIGTERMed worker exited {code}\n{cluster.worker_log(0)[-3000:]}"
    cluster.start_worker()


FAULTS = [
    Fault("redis", _restart_redis),
    Fault("pgbouncer", _restart_pgbouncer),
    # Lost tasks wait for the reconciler; the emulator's stale streams hold some for a minute.
    # Workers that hold few messages each leave a backlog in the emulator for it to lose.
    Fault(
        "pubsub",
        _restart_pubsub,
        deadline_s=180.0,
        env=(("TRAWL_WORKER_CONCURRENCY", "2"),),
        evidence="lost task",
    ),
    Fault("gcs", _cut_gcs, deadline_s=90.0 + GCS_OUTAGE_S),
    Fault("sigkill", _kill_worker, struck=0),
    Fault("sigterm", _stop_worker, struck=0),
]

_baseline: dict[str, dict[str, dict[str, Any]]] = {}


async def clean_export(stack: Stack, base: str, logs: Path) -> dict[str, dict[str, Any]]:
    """The export of a clean run, crawled once for every fault."""
    if base not in _baseline:
        with deployment(stack, logs) as cluster:
            _, records = await crawl(cluster, base)
            assert cluster.stop_workers() == [0, 0], cluster.all_logs()
        _baseline[base] = records
    return _baseline[base]


def differences(name: str, clean: dict[str, Any], got: dict[str, Any]) -> str:
    missing = sorted(clean.keys() - got.keys())
    extra = sorted(got.keys() - clean.keys())
    changed = sorted(url for url in clean.keys() & got.keys() if clean[url] != got[url])
    lines = [
        f"fault {name}: the export differs from a clean run's: {len(missing)} records missing, "
        f"{len(extra)} extra, {len(changed)} changed (of {len(clean)})"
    ]
    lines += [f"  missing {url}" for url in missing[:10]]
    lines += [f"  extra {url}" for url in extra[:10]]
    for url in changed[:5]:
        lines.append(f"  changed {url}:\n    clean {json.dumps(clean[url])}")
        lines.append(f"    got   {json.dumps(got[url])}")
    return "\n".join(lines)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_a_fault_mid_crawl_leaves_the_export_as_a_clean_run(
    fault: Fault, stack: Stack, shop: tuple[Site, str], tmp_path: Path
) -> None:
    site, base = shop
    clean = await clean_export(stack, base, tmp_path / "clean")
    assert sorted(clean.values(), key=lambda r: r["url"]) == expected(site, base, "http"), (
        "the clean run itself is not the shop's known answer"
    )
    third = expected_counts(site)["pages"]["published"] // 3
    started = time.monotonic()
    with deployment(stack, tmp_path / "logs", **dict(fault.env)) as cluster:
        _, got = await crawl(cluster, base, fault=fault, stack=stack, third=third)
        assert got == clean, differences(fault.name, clean, got) + "\n" + cluster.all_logs()
        logs = [cluster.worker_log(n) for n in range(len(cluster.workers))]
        noisy = [n for n, log in enumerate(logs) if "Traceback" in log]
        assert not noisy, (
            f"fault {fault.name}: workers {noisy} logged a traceback; recovering from a "
            f"backend fault is one line per event\n{cluster.all_logs()}"
        )
        if fault.evidence is not None:
            assert any(fault.evidence in log for log in logs), (
                f"fault {fault.name}: no worker logged {fault.evidence!r}, so the fault did not "
                f"test what it should\n{cluster.all_logs()}"
            )
        # The workers the fault did not take down are the ones that started: nobody
        # restarted them, and they are still alive.
        survivors = [w for n, w in enumerate(cluster.workers[:2]) if n != fault.struck]
        dead = [w.returncode for w in survivors if w.poll() is not None]
        assert not dead, f"fault {fault.name}: workers exited {dead}\n{cluster.all_logs()}"
        running = cluster.live_workers()
        cluster.stop_workers()
        codes = [w.returncode for w in running]
        assert all(code == 0 for code in codes), (
            f"fault {fault.name}: workers exited {codes} on SIGTERM\n{cluster.all_logs()}"
        )
    print(f"fault {fault.name}: recovered in {time.monotonic() - started:.1f} s")


async def test_a_queue_re_creates_its_subscription_after_the_emulator_restarted_empty(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pubsub fault relies on, alone: the streaming pull that found its subscription
    gone re-creates it on the next receive, without any publish doing it first."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", stack.pubsub.address)
    names = unique_names()
    queue = PubSubTaskQueue(names.project, names.topic, names.subscription, concurrency=4)
    first, second = (
        Task(execution_id="ex-1", url=f"http://site.test/{n}", depth=0, phase="p") for n in (1, 2)
    )
    try:
        await queue.ensure_resources()
        await queue.publish([first])
        delivery = await asyncio.wait_for(queue.receive(), 30)
        await delivery.ack()
        await asyncio.to_thread(stack.pubsub.restart)

        async def next_delivery() -> Delivery:
            while True:  # as the worker's receive loop does: an ended stream is retried
                try:
                    return await queue.receive()
                except RetryableError:
                    await asyncio.sleep(0.2)

        receiver = asyncio.create_task(next_delivery())
        subscriber = pubsub_v1.SubscriberClient()
        publisher = pubsub_v1.PublisherClient()
        try:
            deadline = time.monotonic() + 60
            while not await asyncio.to_thread(_exists, subscriber, queue.subscription_path):
                assert not receiver.done(), receiver
                assert time.monotonic() < deadline, "the subscription was not re-created in 60 s"
                await asyncio.sleep(0.2)
            await asyncio.wrap_future(publisher.publish(queue.topic_path, encode_task(second)))
        finally:
            subscriber.close()
            publisher.transport.close()
        again = await asyncio.wait_for(receiver, 60)
        assert again.task == second
        await again.ack()
    finally:
        await queue.close()


def _exists(subscriber: Any, path: str) -> bool:
    from google.api_core import exceptions

    try:
        subscriber.get_subscription(subscription=path, timeout=5)
    except exceptions.NotFound:
        return False
    return True
