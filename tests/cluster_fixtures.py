"""Fixtures of the distributed end-to-end tests: the Aqua shop served on 127.0.0.1 and a
deployment (`tests.cluster.Cluster`) over a database of the test's own, the shared Redis and
the Pub/Sub and GCS emulators. Test modules import them by name."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.aqua.generate import build_site
from examples.aqua.server import serve
from tests.cluster import Cluster, cluster_env
from tests.services.gcs import gcs_emulator
from tests.services.postgres import TestDatabase, postgres_database
from tests.services.pubsub import pubsub_emulator
from tests.services.redis import ensure_redis

__all__ = ["cluster", "gcs_emulator", "postgres_database", "pubsub_emulator", "shop"]


@pytest.fixture
async def shop() -> AsyncIterator[tuple[Any, str]]:
    """The generated shop and its base URL."""
    site = build_site()
    async with serve(site, "127.0.0.1") as base:
        yield site, base


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_database: TestDatabase, pubsub_emulator: str, gcs_emulator: str
) -> Iterator[Cluster]:
    """A deployment's environment; its processes' logs under the test's tmp_path."""
    with deployment(tmp_path, postgres_database, pubsub_emulator, gcs_emulator) as cluster:
        yield cluster


def deployment(
    tmp_path: Path,
    database: TestDatabase,
    pubsub_emulator: str,
    gcs_emulator: str,
    **env: str,
) -> contextlib.AbstractContextManager[Cluster]:
    """The ``cluster`` fixture's deployment, with ``env`` on top (TRAWL_* settings)."""
    return cluster_env(
        database_url=database.dsn,
        redis_url=ensure_redis(),
        pubsub_host=pubsub_emulator,
        gcs_endpoint=gcs_emulator,
        logs=tmp_path / "logs",
        **env,
    )


def without_run_fields(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as two runs of one crawl share them: no execution id, fetch time or parent
    (the page whose link was claimed first); the hash of each page's HTML is checked for
    its form and left out (the expected records do not spell it out)."""
    for record in records:
        record.pop("execution_id")
        record.pop("fetched_at")
        record.pop("parent_url")
        assert len(record.pop("content_hash")) == 64, record["url"]
    return sorted(records, key=lambda r: r["url"])
