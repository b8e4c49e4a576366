"""API keys and the running-execution cap against real Postgres through PgBouncer:
``trawl keys create|list|revoke`` as an operator runs them, the API refusing revoked and
expired keys, and concurrent starts that never overshoot a tenant's cap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryTaskQueue
from backends.postgres import PostgresStateStore
from orchestrator import Services
from orchestrator.auth import create_key, hash_key
from orchestrator.quotas import Quotas
from orchestrator.services import Limits
from tests.api.memory_app import AllowAll, preview_fetchers, served
from tests.services.postgres import TestDatabase, postgres_database  # noqa: F401 - fixture
from worker.assemble import Ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = """
name: shop
start_urls: ["http://127.0.0.1:9/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
"""


def trawl(database: TestDatabase | str, *args: str) -> subprocess.CompletedProcess[str]:
    """``trawl ARGS`` with the database (or a DSN) as its only setting."""
    dsn = database if isinstance(database, str) else database.dsn
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "TRAWL_DATABASE_URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "trawl", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"  # the session's database is shared: a tenant per test


@pytest.fixture
async def store(postgres_database: TestDatabase) -> AsyncIterator[PostgresStateStore]:  # noqa: F811
    store = await PostgresStateStore.from_url(postgres_database.dsn, min_size=1, max_size=10)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def services(store: PostgresStateStore, tmp_path: Path) -> Iterator[Services]:
    """The API's services with the real Postgres store (the other ports in memory: starts
    publish to a memory queue; nothing is fetched)."""
    ports = Ports(
        queue=MemoryTaskQueue(),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(),
        state=store,
        blobs=LocalBlobStore(tmp_path / "blobs"),
    )
    limits = Limits(
        max_running_executions=3, quotas=Quotas(api_requests_per_s=1000, api_burst=1000)
    )
    yield Services(ports=ports, open_fetchers=preview_fetchers, guard=AllowAll(), limits=limits)


async def get_status(http: aiohttp.ClientSession, auth: dict[str, str]) -> tuple[int, str | None]:
    """``GET /v1/workflows``: its status and, for an error, its detail."""
    async with http.get("/v1/workflows", headers=auth) as response:
        body = await response.json()
        return response.status, body["detail"] if response.status >= 400 else None


def row_of(listing: str, key_id: str) -> list[str]:
    [line] = [line for line in listing.splitlines() if line.startswith(key_id)]
    return line.split()


async def test_create_list_and_revoke_keys_from_the_cli(
    postgres_database: TestDatabase,  # noqa: F811
    services: Services,
    tenant: str,
) -> None:
    created = trawl(postgres_database, "keys", "create", "--tenant", tenant, "--expires-in", "7")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("trawl_") and "\n" not in key
    key_id = hash_key(key)[:12]
    assert f"API key {key_id} for tenant '{tenant}', expires " in created.stderr
    assert "not shown again" in created.stderr
    admin = trawl(postgres_database, "keys", "create", "--tenant", tenant, "--admin")
    assert admin.returncode == 0, admin.stderr
    assert "admin API key" in admin.stderr

    listed = trawl(postgres_database, "keys", "list", "--tenant", tenant)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "TENANT", "ADMIN", "CREATED", "EXPIRES", "REVOKED"]
    assert len(lines) == 3 and "2 key(s)" in listed.stderr
    row = row_of(listed.stdout, key_id)
    assert row[1:3] == [tenant, "no"] and row[-1] == "-"  # not revoked
    expires = datetime.strptime(f"{row[5]} {row[6]}", "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
    assert key not in listed.stdout and hash_key(key) not in listed.stdout
    assert row_of(listed.stdout, hash_key(admin.stdout.strip())[:12])[2] == "yes"

    async with served(services) as base, aiohttp.ClientSession(base) as http:
        auth = {"Authorization": f"Bearer {key}"}
        assert await get_status(http, auth) == (200, None)
        revoked = await asyncio.to_thread(trawl, postgres_database, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked API key {key_id} of tenant '{tenant}'" in revoked.stdout
        assert await get_status(http, auth) == (401, "API key revoked")

    after = trawl(postgres_database, "keys", "list", "--tenant", tenant)
    assert row_of(after.stdout, key_id)[-1].endswith("Z")  # the revocation time
    unknown = trawl(postgres_database, "keys", "revoke", "000000000000")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "trawl: no API key 000000000000 (trawl keys list shows the ids)"
    )
    assert "Traceback" not in unknown.stderr


def test_bad_key_commands_say_what_is_wrong(
    postgres_database: TestDatabase,  # noqa: F811
) -> None:
    bad = trawl(postgres_database, "keys", "create", "--tenant", "acme", "--expires-in", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "trawl: --expires-in: the expiry must be more than 0 and at most 36500 days"
    )
    blank = trawl(postgres_database, "keys", "list", "--tenant", " ")
    assert (blank.returncode, blank.stderr.strip()) == (2, "trawl: --tenant must not be empty")
    dead = trawl("postgresql://postgres@127.0.0.1:1/trawl", "keys", "list")
    assert dead.returncode == 3, dead.stderr
    assert "127.0.0.1:1" in dead.stderr and "Traceback" not in dead.stderr
    assert len(dead.stderr.strip().splitlines()) == 1


async def test_an_expired_key_is_refused_saying_so(
    services: Services, store: PostgresStateStore, tenant: str
) -> None:
    key = "trawl_" + uuid.uuid4().hex
    past = datetime.now(UTC) - timedelta(seconds=1)
    await store.create_api_key(hash_key(key), tenant, expires_at=past)
    async with served(services) as base, aiohttp.ClientSession(base) as http:
        auth = {"Authorization": f"Bearer {key}"}
        assert await get_status(http, auth) == (401, "API key expired")


async def test_concurrent_starts_never_overshoot_the_cap(
    services: Services, store: PostgresStateStore, tenant: str
) -> None:
    """Twenty starts at once over a real server and real Postgres, cap 3: exactly three
    executions exist and are running, the other seventeen are 429s."""
    auth = {"Authorization": f"Bearer {await create_key(store, tenant)}"}
    async with served(services) as base, aiohttp.ClientSession(base) as http:
        yaml = {**auth, "Content-Type": "application/yaml"}
        async with http.post("/v1/workflows", data=WORKFLOW, headers=yaml) as response:
            assert response.status == 201, await response.text()

        async def start() -> tuple[int, str]:
            async with http.post("/v1/workflows/shop/executions", headers=auth) as response:
                return response.status, await response.text()

        results = await asyncio.gather(*(start() for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [202] * 3 + [429] * 17, results
    assert all(
        "3 executions are already running for this tenant" in body
        for status, body in results
        if status == 429
    )
    executions = await store.list_executions(tenant)
    assert len(executions) == 3 and {e.status for e in executions} == {"running"}
    assert await store.count_active_executions(tenant) == 3
