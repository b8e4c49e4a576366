"""Secrets in real Postgres through PgBouncer: ``trawl secrets set|list|delete`` as an
operator runs them (the value from stdin, never echoed), and what the tables hold: a
sealed value with ``TRAWL_SECRETS_KEY``, and a clear error without the key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from backends.errors import PermanentError
from backends.postgres import PostgresStateStore
from backends.secret_cipher import SecretCipher
from backends.state import LoginSession, SessionCookie
from tests.services.postgres import TestDatabase, postgres_database  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(os.urandom(32)).decode()


def trawl(
    database: TestDatabase, *args: str, stdin: str = "", key: str = KEY
) -> subprocess.CompletedProcess[str]:
    """``trawl ARGS`` with the database and the secrets key as its only settings."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "TRAWL_DATABASE_URL": database.dsn,
        "TRAWL_SECRETS_KEY": key,
    }
    return subprocess.run(
        [sys.executable, "-m", "trawl", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"  # the session's database is shared: a tenant per test


async def raw_values(database: TestDatabase, tenant: str) -> list[str]:
    conn = await asyncpg.connect(database.dsn, statement_cache_size=0)
    try:
        rows = await conn.fetch("SELECT value FROM secrets WHERE tenant = $1", tenant)
    finally:
        await conn.close()
    return [row["value"] for row in rows]


async def test_an_operator_sets_lists_and_deletes_a_tenants_secret(
    postgres_database: TestDatabase,  # noqa: F811
    tenant: str,
) -> None:
    value = "pw-from-stdin-4c1d"

    done = trawl(
        postgres_database, "secrets", "set", "PASS", "--tenant", tenant, stdin=value + "\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"secret PASS of tenant {tenant!r} set\n"

    listed = trawl(postgres_database, "secrets", "list", "--tenant", tenant)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "UPDATED"] and row.split()[0] == "PASS"
    assert value not in listed.stdout + listed.stderr

    (stored,) = await raw_values(postgres_database, tenant)
    assert stored.startswith("v1:") and value not in stored  # sealed with TRAWL_SECRETS_KEY
    store = await PostgresStateStore.from_url(
        postgres_database.dsn, cipher=SecretCipher.from_setting(KEY)
    )
    try:
        assert await store.get_secrets(tenant, ["PASS"]) == {"PASS": value}
    finally:
        await store.close()

    bad = trawl(postgres_database, "secrets", "set", "9X", "--tenant", tenant, stdin="v")
    assert bad.returncode == 2
    assert "'9X': not a secret name" in bad.stderr

    gone = trawl(postgres_database, "secrets", "delete", "PASS", "--tenant", tenant)
    assert gone.returncode == 0, gone.stderr
    again = trawl(postgres_database, "secrets", "delete", "PASS", "--tenant", tenant)
    assert again.returncode == 1
    assert again.stderr == f"trawl: tenant {tenant!r} has no secret PASS\n"


async def test_sealed_secrets_and_sessions_need_the_key_and_say_so(
    postgres_database: TestDatabase,  # noqa: F811
    tenant: str,
) -> None:
    cipher = SecretCipher.from_setting(KEY)
    sealed = await PostgresStateStore.from_url(postgres_database.dsn, cipher=cipher)
    keyless = await PostgresStateStore.from_url(postgres_database.dsn)
    execution = f"e-{uuid.uuid4().hex}"
    session = LoginSession(cookies=[SessionCookie(name="sid", value="c-77", domain="a.example")])
    try:
        await sealed.put_secret(tenant, "TOKEN", "tok-9")
        await sealed.put_session(execution, session)
        assert await sealed.get_session(execution) == session
        with pytest.raises(PermanentError, match="TRAWL_SECRETS_KEY is not set") as refused:
            await keyless.get_secrets(tenant, ["TOKEN"])
        assert refused.value.error_class == "secret_key"
        assert "tok-9" not in str(refused.value)
        with pytest.raises(PermanentError, match="TRAWL_SECRETS_KEY is not set"):
            await keyless.get_session(execution)
        # Stored without a key, a secret stays readable once a key is set.
        await keyless.put_secret(tenant, "OLD", "plain-1")
        assert await sealed.get_secrets(tenant, ["OLD"]) == {"OLD": "plain-1"}
    finally:
        await sealed.close()
        await keyless.close()
