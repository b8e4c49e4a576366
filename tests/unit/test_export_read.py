"""Reading an export back: ``GET /v1/executions/{id}/records`` and ``trawl export`` in JSON
lines, CSV and Parquet, filtered by phase; a phase rolled into several files is one
Parquet file when downloaded."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from backends.local import LocalBlobStore
from tests.api.memory_app import memory_api
from tests.unit.test_export_build import TINY, World, line, product
from trawl.cli import main
from trawl.local_outputs import exported_records
from worker.export import build_export
from worker.export_read import write_export
from worker.paths import part_path

WORKFLOW = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: listing
    nodes:
      - {type: extract, fields: {title: h1}}
      - {type: extract_links, marker: product}
    transitions:
      - {when: {marker: product}, to: product}
  - name: product
    nodes:
      - {type: extract, fields: {name: h1, tags: {css: .tag, multiple: true}}}
"""
YAML = {"Content-Type": "application/yaml"}


async def test_the_records_route_serves_every_format_and_filters_by_phase(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        created = await api.client.post("/v1/workflows", content=WORKFLOW, headers=auth | YAML)
        assert created.status_code == 201, created.text
        eid = (await api.client.post("/v1/workflows/shop/executions", headers=auth)).json()["id"]
        blobs = api.services.ports.blobs
        lines = [line("product", f"http://shop.test/p/{n}", 1, {"name": f"P{n}"}) for n in (2, 1)]
        lines.append(line("listing", "http://shop.test/", 0, {"title": "Home"}))
        await blobs.write(part_path(eid, "x", "w1", 1), b"".join(lines))
        cancelled = await api.client.post(f"/v1/executions/{eid}/cancel", headers=auth)
        assert cancelled.status_code == 202

        async def get(query: str) -> Any:
            return await api.client.get(f"/v1/executions/{eid}/records{query}", headers=auth)

        every = [json.loads(x) for x in (await get("")).text.splitlines()]
        assert [(r["phase"], r["url"]) for r in every] == [
            ("listing", "http://shop.test/"),
            ("product", "http://shop.test/p/1"),
            ("product", "http://shop.test/p/2"),
        ]
        assert list(every[0])[:4] == ["execution_id", "workflow", "phase", "url"]
        products = [json.loads(x) for x in (await get("?phase=product")).text.splitlines()]
        assert [r["url"] for r in products] == ["http://shop.test/p/1", "http://shop.test/p/2"]
        assert [r["data"]["tags"] for r in products] == [[], []]  # never null

        listing = await get("?format=csv&phase=listing")
        assert listing.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(listing.text)))
        assert [(r["phase"], r["data.title"]) for r in rows] == [("listing", "Home")]

        unknown = await get("?phase=checkout")
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == (
            f"execution {eid} has no phase 'checkout'; its phases with records: listing, product"
        )
        which = await get("?format=parquet")
        assert which.status_code == 422
        assert "name one with phase (listing, product)" in which.json()["detail"]

        parquet = await get("?format=parquet&phase=product")
        assert parquet.status_code == 200
        assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(parquet.content)).to_pylist()
        assert [(r["url"], r["data"]["tags"]) for r in table] == [
            ("http://shop.test/p/1", []),
            ("http://shop.test/p/2", []),
        ]


async def test_a_phase_in_several_files_downloads_as_one_parquet_file(tmp_path: Path) -> None:
    world = World(tmp_path)
    execution = await world.execution()
    await world.part(
        "a", 1, *(line("product", f"http://h/p/{n:03d}", 1, product(n)) for n in range(250))
    )
    await build_export(world.blobs, world.state, execution, options=TINY)
    assert len([f for f in world.manifest()["files"] if f["format"] == "parquet"]) >= 2

    out = io.BytesIO()
    count = await write_export(world.blobs, "ex", "parquet", out)  # the only phase: no name

    rows = pq.read_table(io.BytesIO(out.getvalue())).to_pylist()
    assert count == len(rows) == 250
    assert [r["url"] for r in rows] == [r["url"] for r in exported_records(tmp_path / "ex")]


async def export_two_phases(out: Path) -> Path:
    world = World(out)
    execution = await world.execution()
    await world.part(
        "a",
        1,
        line("listing", "http://h/", 0, {"title": "Home"}),
        line("product", "http://h/p/1", 1, product(1)),
    )
    await build_export(LocalBlobStore(out), world.state, execution)
    return out / "ex"


def test_trawl_export_writes_parquet_of_the_phase_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = asyncio.run(export_two_phases(tmp_path / "out"))
    target = tmp_path / "product.parquet"

    assert main(["export", str(run), "--format", "parquet", "-o", str(target)]) == 1
    assert capsys.readouterr().err == (
        "trawl: Parquet is one phase's records: name one with phase (listing, product)\n"
    )
    assert not target.exists()

    assert (
        main(["export", str(run), "--format", "parquet", "--phase", "product", "-o", str(target)])
        == 0
    )
    assert capsys.readouterr().err == f"1 records in {target}\n"
    [row] = pq.read_table(target).to_pylist()
    assert row["url"] == "http://h/p/1"

    assert main(["export", str(run), "--phase", "listing"]) == 0
    [record] = [msgspec.json.decode(x) for x in capsys.readouterr().out.splitlines()]
    assert (record["phase"], record["data"]) == ("listing", {"title": "Home"})

    assert main(["export", str(run), "--phase", "nope"]) == 1
    assert capsys.readouterr().err.startswith("trawl: execution ex has no phase 'nope'")
