"""DuckDB reads an execution's export straight from GCS (the emulator), with no code of ours:
the Aqua shop crawled by `trawl run --out gs://...`'s code path, then its Parquet and its
JSON lines read through gcsfs give the same rows, and those are the records the shop must
give."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from gcsfs.core import GCSFileSystem  # the plain one: the default probes the bucket over gRPC

from backends.gcp import GcsBlobStore, make_storage_client
from examples.aqua.generate import build_site, expected
from examples.aqua.server import serve
from tests.services.gcs import PROJECT, gcs_bucket, gcs_emulator
from trawl.embedded import crawl
from trawl.settings import Settings
from workflows import load_workflow_file

__all__ = ["gcs_bucket", "gcs_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AQUA_HTTP = Path(__file__).resolve().parents[2] / "examples" / "aqua" / "aqua-http.yaml"


def plain(value: Any) -> Any:
    """A row as DuckDB returns it, minus what only tells its two readings apart: read_json
    makes an ``as: object`` field a struct of every key seen (null where a record has none),
    Parquet keeps it a map of the keys each record has."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def test_duckdb_reads_the_same_rows_from_the_parquet_and_the_json_lines(
    tmp_path: Path, gcs_emulator: str, gcs_bucket: str
) -> None:
    client = make_storage_client()
    client.create_bucket(gcs_bucket)
    blobs = GcsBlobStore(client, gcs_bucket, "runs")
    site = build_site()
    async with serve(site, "127.0.0.1") as base:
        workflow = load_workflow_file(AQUA_HTTP, overrides=[f"start_urls=[{base}/]"])
        progress = io.StringIO()
        result = await crawl(
            workflow,
            out_dir=tmp_path / "state",
            settings=Settings(),
            stream=progress,
            handle_signals=False,
            blobs=blobs,
            location=f"gs://{gcs_bucket}/runs",
        )
    client.close()
    assert result.execution.status == "completed", progress.getvalue()
    want = expected(site, base, "http")

    duck = duckdb.connect()
    duck.register_filesystem(
        GCSFileSystem(endpoint_url=gcs_emulator, token="anon", project=PROJECT)
    )
    records = f"gs://{gcs_bucket}/runs/{result.execution.id}/export/records"
    from_parquet = duck.sql(
        f"SELECT * FROM read_parquet('{records}/*/*.parquet', hive_partitioning = true) "
        "ORDER BY phase, url"
    )
    from_json = duck.sql(
        f"SELECT * FROM read_json('{records}/*/*.jsonl.gz', hive_partitioning = true) "
        "ORDER BY phase, url"
    )
    assert from_parquet.columns == from_json.columns
    parquet_rows, json_rows = from_parquet.fetchall(), from_json.fetchall()
    assert len(parquet_rows) == len(want) > 50
    assert plain(parquet_rows) == plain(json_rows)

    # And they are the shop's records: the columns by name, the run's own fields aside.
    rows = [dict(zip(from_parquet.columns, row, strict=True)) for row in parquet_rows]
    got = [
        {k: v for k, v in row.items() if k not in ("execution_id", "fetched_at", "parent_url")}
        for row in rows
    ]
    assert [r["url"] for r in got] == [r["url"] for r in want]
    assert [r["phase"] for r in got] == [r["phase"] for r in want]
    by_url = {r["url"]: r for r in got}
    for record in want:
        data = by_url[record["url"]]["data"]
        assert plain(data) == plain(record["data"]), record["url"]

    manifest = json.loads(
        make_storage_client()
        .bucket(gcs_bucket)
        .blob(f"runs/{result.execution.id}/export/manifest.json")
        .download_as_bytes()
    )
    assert manifest["counts"]["records"] == len(want)
    assert {f["format"] for f in manifest["files"]} == {"jsonl", "parquet"}
