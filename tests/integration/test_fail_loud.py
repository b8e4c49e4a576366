"""A process that cannot work says so: a port already taken is one line and an exit code
before any backend is contacted; a worker whose bucket is missing pulls nothing, answers
503 on /readyz naming the bucket, and starts once the bucket exists; a worker whose sink
fails for good exits non-zero with one log line naming why."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backends.errors import PermanentError
from backends.gcp import GcsBlobStore, make_storage_client
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryTaskQueue
from backends.postgres import PostgresStateStore
from backends.postgres.migrate import load_migrations, migrate
from backends.ratelimit import RatePolicy
from backends.redis import RedisRateLimiter
from examples.aqua.generate import expected
from tests.cluster import ROOT, TRAWL, Cluster, completed, wait_for_execution
from tests.cluster_fixtures import deployment, shop, without_run_fields
from tests.services import free_port
from tests.services.gcs import delete_bucket, gcs_emulator
from tests.services.postgres import (
    TestDatabase,
    create_database,
    drop_database,
    postgres_database,
)
from tests.services.pubsub import pubsub_emulator
from tests.services.redis import ensure_redis
from trawl.readiness import readiness_checks
from worker.assemble import Ports

__all__ = ["gcs_emulator", "postgres_database", "pubsub_emulator", "shop"]

pytestmark = pytest.mark.integration

AQUA_HTTP = ROOT / "examples" / "aqua" / "aqua-http.yaml"


# -- a port already taken (no backend needed: the port is bound before any is contacted)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "host_setting"),
    [("worker", "TRAWL_HEALTH_HOST"), ("orchestrator", "TRAWL_API_HOST")],
)
def test_a_port_already_taken_is_one_line_naming_the_setting(
    taken_port: int, command: str, host_setting: str
) -> None:
    env = {
        **os.environ,
        "PORT": str(taken_port),
        # Nothing answers here: a process that connected before binding would take
        # seconds and complain about the database instead.
        "TRAWL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/trawl",
        "TRAWL_LOG_FORMAT": "text",
    }
    started = time.monotonic()
    done = subprocess.run(
        [*TRAWL, command],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"trawl: port {taken_port} on 127.0.0.1 is already in use; set PORT to a free port "
        f"(or {host_setting} to another address)\n"
    )
    assert time.monotonic() - started < 15  # no backend retries before the bind


# -- a worker and its bucket


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_database: TestDatabase, pubsub_emulator: str, gcs_emulator: str
) -> Iterator[Cluster]:
    # As in production: the bucket must exist already.
    with deployment(
        tmp_path,
        postgres_database,
        pubsub_emulator,
        gcs_emulator,
        TRAWL_GCS_CREATE_BUCKET="0",
    ) as made:
        bucket = made.env["TRAWL_GCS_BUCKET"]
        try:
            yield made
        finally:
            client = make_storage_client()
            try:
                delete_bucket(client, bucket)
            finally:
                client.close()


async def create_bucket(cluster: Cluster) -> None:
    store = GcsBlobStore(make_storage_client(), cluster.env["TRAWL_GCS_BUCKET"], owns_client=True)
    try:
        await store.ensure_bucket()
    finally:
        await store.close()


async def get_json(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.json()


async def poll(port: int, path: str, until: Any, deadline_s: float, cluster: Cluster) -> Any:
    """GET ``path`` every 0.25 s until ``until(status, body)``; the last answer."""
    deadline = time.monotonic() + deadline_s
    answer: Any = None
    while time.monotonic() < deadline:
        try:
            answer = await get_json(port, path)
        except aiohttp.ClientError:
            answer = None  # not listening yet
        if answer is not None and until(*answer):
            return answer
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path} answered {answer} after {deadline_s} s\n{cluster.all_logs()}")


@pytest.mark.timeout(300)
async def test_a_worker_without_its_bucket_waits_then_works(
    cluster: Cluster, shop: tuple[Any, str]
) -> None:
    site, base = shop
    bucket = cluster.env["TRAWL_GCS_BUCKET"]
    execution_id = cluster.submit(AQUA_HTTP, f"start_urls=[{base}/]")
    cluster.start_worker()
    port = cluster.ports[0]

    status, body = await poll(
        port, "/readyz", lambda s, b: s == 503 and "gcs" in b["down"], 60, cluster
    )
    assert body["down"]["gcs"] == f"bucket '{bucket}' does not exist"
    assert set(body["down"]) == {"gcs"}  # everything else answers
    status, health = await get_json(port, "/healthz")
    assert status == 200 and health["in_flight"] == 0  # alive: retrying, holding nothing
    assert health["waiting_for"] == {"gcs": f"bucket '{bucket}' does not exist"}
    execution, progress = await wait_for_execution(
        cluster, execution_id, until=lambda e, p: True, deadline_s=5
    )
    assert (execution.status, progress.finished) == ("running", 0)

    await create_bucket(cluster)

    execution, _ = await wait_for_execution(cluster, execution_id, until=completed, deadline_s=180)
    assert execution.status == "completed", cluster.all_logs()
    assert without_run_fields(cluster.records(execution_id)) == expected(site, base, "http")
    status, body = await get_json(port, "/readyz")
    assert (status, body) == (
        200,
        {"status": "ready", "checked": ["gcs", "postgres", "pubsub", "redis"]},
    )
    log = cluster.worker_log(0)
    waits = [line for line in log.splitlines() if "not pulling tasks yet" in line]
    assert 1 <= len(waits) <= 8, log  # one warning per backoff step, not a flood
    assert cluster.stop_workers() == [0], cluster.all_logs()


@pytest.mark.timeout(300)
async def test_a_worker_whose_sink_fails_for_good_exits_non_zero_naming_why(
    cluster: Cluster, shop: tuple[Any, str]
) -> None:
    _site, base = shop
    bucket = cluster.env["TRAWL_GCS_BUCKET"]
    await create_bucket(cluster)
    cluster.start_worker()
    port = cluster.ports[0]
    await poll(port, "/readyz", lambda s, b: s == 200, 60, cluster)
    # The bucket goes away after the worker found it (an operator's mistake, a lifecycle
    # rule): its first part file cannot be written.
    client = make_storage_client()
    try:
        delete_bucket(client, bucket)
    finally:
        client.close()
    cluster.submit(AQUA_HTTP, f"start_urls=[{base}/]")

    worker = cluster.workers[0]
    try:
        code = await asyncio.to_thread(worker.wait, 60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not exit\n{cluster.all_logs()}") from None
    assert code == 1, cluster.all_logs()
    errors = [
        json.loads(line)
        for line in cluster.worker_log(0).splitlines()
        if line.startswith("{") and json.loads(line).get("severity") == "ERROR"
    ]
    assert len(errors) == 1, cluster.all_logs()
    message = errors[0]["message"]
    assert message.startswith("worker stopping: sink failed: GCS at "), message
    assert f"(does bucket '{bucket}' exist?)" in message
    assert "Traceback" not in cluster.worker_log(0)


# -- readiness checks what the process needs, not just that a backend answers


async def test_readiness_names_the_migrations_a_database_lacks() -> None:
    database = create_database(migrated=False)
    try:
        state = await PostgresStateStore.from_url(database.dsn, max_size=2)
        try:
            ports = Ports(
                queue=MemoryTaskQueue(),
                seen=MemorySeenSet(),
                limiter=MemoryRateLimiter(),
                state=state,
                blobs=LocalBlobStore(ROOT / "nonexistent-never-written"),
            )
            check = readiness_checks(ports, "worker", ("postgres",))["postgres"]
            packaged = [m.version for m in load_migrations()]
            with pytest.raises(PermanentError) as unready:
                await check()
            assert str(unready.value) == (
                f"the database schema lacks migration(s) {', '.join(packaged)}; run `trawl migrate`"
            )
            assert "postgres@" not in str(unready.value)  # no user or password

            await migrate(database.direct_dsn)
            fresh = readiness_checks(ports, "worker", ("postgres",))["postgres"]
            await fresh()  # at the packaged migration: ready
        finally:
            await state.close()
    finally:
        drop_database(database)


async def test_a_rate_limiter_call_cancelled_on_the_wire_honours_it() -> None:
    """A caller cancelled while its acquire is on the wire gets the cancel at once, though
    the command runs on (its reply is held back here); the permit it took goes back when
    the reply comes."""
    limiter = RedisRateLimiter.from_url(ensure_redis(), prefix=f"trawl-test-{uuid.uuid4().hex}:")
    pipeline = limiter._batcher._pipeline
    ran = asyncio.Event()
    caller_gone = asyncio.Event()

    async def held_reply(batch: Any) -> Any:
        replies = await pipeline(batch)  # the command completes...
        ran.set()
        await caller_gone.wait()  # ...and its reply comes only after the caller gave up
        return replies

    limiter._batcher._pipeline = held_reply  # type: ignore[method-assign]
    policy = RatePolicy(
        rate_per_s=10, burst=1, min_interval_s=0.0, max_concurrency=1, lease_ttl_s=60
    )
    try:
        acquire = asyncio.create_task(limiter.acquire("host.test", policy))
        await ran.wait()
        acquire.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(acquire, 5)
        limiter._batcher._pipeline = pipeline  # type: ignore[method-assign]
        caller_gone.set()
        await limiter._batcher.wait_idle()
        # The permit went back: the only concurrency slot is free again.
        assert await limiter._redis.zcard(limiter.keys("host.test")[1]) == 0
    finally:
        await limiter.close()


@pytest.mark.timeout(120)
async def test_the_orchestrator_is_not_ready_without_its_bucket(cluster: Cluster) -> None:
    bucket = cluster.env["TRAWL_GCS_BUCKET"]
    port = free_port()
    orchestrator = start_orchestrator(cluster, port)
    try:
        status, body = await poll(port, "/readyz", lambda s, b: True, 60, cluster)
        assert (status, body) == (
            503,
            {
                "status": "unavailable",
                "checked": ["postgres", "redis", "pubsub", "gcs", "scheduler"],
                "down": {"gcs": f"bucket '{bucket}' does not exist"},
            },
        )
        await create_bucket(cluster)
        status, body = await poll(port, "/readyz", lambda s, b: s == 200, 30, cluster)
        assert body["status"] == "ready"
    finally:
        orchestrator.terminate()
        await asyncio.to_thread(orchestrator.wait, 30)


def start_orchestrator(cluster: Cluster, port: int) -> subprocess.Popen[bytes]:
    """``trawl orchestrator`` on ``port``, killed at the end like the workers."""
    log = (cluster.logs / "orchestrator.log").open("wb")
    orchestrator = subprocess.Popen(
        [*TRAWL, "orchestrator"],
        env={**cluster.env, "PORT": str(port)},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    cluster.workers.append(orchestrator)
    cluster.ports.append(port)
    return orchestrator
