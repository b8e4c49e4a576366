"""The streamed export over a local blob store: exactly once through an external sort that
spills, phase datasets rolled at their size in every format, the manifest, ``[]`` for empty
lists, the ``latest`` pointer, rebuilds, and a cancel's export holding every counted record."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore
from backends.state import Execution, TaskResult
from trawl.local_outputs import exported_records
from worker.export import ExportOptions, build_export
from worker.export.manifest import LatestPointer
from worker.export.sort import SortOptions
from worker.paths import latest_path, part_path
from worker.reconcile import settle_cancel
from worker.start import store_workflow
from workflows import validate_data

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WORKFLOW: dict[str, Any] = {
    "name": "shop",
    "start_urls": ["http://h/"],
    "engine": "http",
    "phases": [
        {
            "name": "listing",
            "nodes": [
                {"type": "extract", "fields": {"title": "h1"}},
                {"type": "extract_links", "selector": "a", "marker": "product"},
            ],
            "transitions": [{"when": {"marker": "product"}, "to": "product"}],
        },
        {
            "name": "product",
            "engine": "browser",
            "nodes": [
                {
                    "type": "extract",
                    "fields": {
                        "name": "h1",
                        "price": {"css": ".price", "type": "float"},
                        "images": {"css": "img", "attr": "src", "multiple": True},
                        "specs": {
                            "css": "tr",
                            "multiple": True,
                            "fields": {"key": "th", "value": "td"},
                            "as": "object",
                        },
                        "in_stock": {"css": ".stock", "type": "bool", "default": False},
                    },
                },
                {"type": "script", "code": "() => 1", "as": "reviews"},
            ],
        },
    ],
}
# Small enough that 600 records spill several runs, merge in two levels and roll files.
TINY = ExportOptions(
    file_bytes=40_000,
    row_group_bytes=10_000,
    sort=SortOptions(chunk_bytes=30_000, segment_bytes=8_000, read_bytes=2_048, fan_in=3),
)


def line(phase: str, url: str, depth: int, data: dict[str, Any]) -> bytes:
    record = {
        "execution_id": "ex",
        "workflow": "shop",
        "phase": phase,
        "url": url,
        "final_url": None,
        "marker": None,
        "parent_url": None,
        "depth": depth,
        "status": 200,
        "content_type": "text/html",
        "fetched_at": "2026-11-23T09:10:27Z",
        "data": data,
    }
    return msgspec.json.encode(record) + b"\n"


def product(n: int, **extra: Any) -> dict[str, Any]:
    data = {
        "name": f"P{n}",
        "price": n * 1.5,
        "images": [f"http://h/i/{n}.png"] if n % 3 else None,
        "specs": {"Volume": f"{n} l"} if n % 2 else None,
        "in_stock": n % 2 == 0,
        "reviews": [{"stars": n % 5}] if n % 4 else None,
    }
    return data | extra


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = LocalBlobStore(root)
        self.state = MemoryStateStore()

    async def execution(
        self, execution_id: str = "ex", status: str = "completed", **fields: Any
    ) -> Execution:
        version = await store_workflow(
            self.state, "default", validate_data(WORKFLOW), "name: shop  # as put\n"
        )
        execution = msgspec.convert(
            {
                "id": execution_id,
                "workflow": "shop",
                "workflow_version": version,
                "created_at": T0,
                "status": status,
                "started_at": T0,
                "finished_at": T0 + timedelta(minutes=5),
                **fields,
            },
            Execution,
        )
        await self.state.create_execution(execution)
        return execution

    async def part(self, worker: str, seq: int, *lines: bytes, execution_id: str = "ex") -> None:
        await self.blobs.write(part_path(execution_id, "any", worker, seq), b"".join(lines))

    def file(self, relative: str, execution_id: str = "ex") -> bytes:
        return (self.root / execution_id / "export" / relative).read_bytes()

    def manifest(self, execution_id: str = "ex") -> dict[str, Any]:
        return json.loads(self.file("manifest.json", execution_id))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_each_key_once_the_shallowest_then_the_first_read_through_spilled_runs(
    world: World,
) -> None:
    execution = await world.execution()
    # Three workers wrote overlapping records; worker b saw every product one link deeper.
    for worker, depth in (("a", 2), ("b", 3), ("c", 2)):
        for seq in range(2):
            lines = [
                line("product", f"http://h/p/{n:03d}", depth, product(n, name=f"{worker}{seq}"))
                for n in range(seq * 100, seq * 100 + 200)
            ]
            await world.part(worker, seq, *lines)
    await world.part("a", 9, line("listing", "http://h/", 0, {"title": "Home"}))

    result = await build_export(world.blobs, world.state, execution, options=TINY)

    records = exported_records(world.root / "ex")
    assert [(r["phase"], r["url"]) for r in records] == [("listing", "http://h/")] + [
        ("product", f"http://h/p/{n:03d}") for n in range(300)
    ]
    # Worker a's copy at depth 2: of its two parts, the first read (part 0) for 0..199.
    names = {r["url"][-3:]: r["data"]["name"] for r in records if r["phase"] == "product"}
    assert names["000"] == "a0" and names["150"] == "a0" and names["250"] == "a1"
    assert {r["depth"] for r in records if r["phase"] == "product"} == {2}
    assert (result.records, result.duplicates_dropped) == (301, 900)
    # The sort spilled runs and deleted them afterwards.
    assert not list((world.root / "ex" / "export").glob(".runs/*/*"))


async def test_datasets_roll_together_and_the_manifest_lists_every_file(world: World) -> None:
    execution = await world.execution(params={"set": ["max_depth=2"]})
    await world.part(
        "a", 1, *(line("product", f"http://h/p/{n:03d}", 1, product(n)) for n in range(300))
    )
    options = ExportOptions(
        file_bytes=TINY.file_bytes, row_group_bytes=TINY.row_group_bytes, csv=True, sort=TINY.sort
    )

    result = await build_export(world.blobs, world.state, execution, options=options)

    manifest = world.manifest()
    files = manifest["files"]
    indexes = sorted({f["path"].rsplit("/", 1)[1].split(".")[0] for f in files})
    assert len(indexes) > 2  # rolled
    for index in indexes:
        trio = [f for f in files if f"/{index}." in f["path"]]
        assert sorted(f["format"] for f in trio) == ["csv", "jsonl", "parquet"]
        assert len({f["records"] for f in trio}) == 1
    assert sum(f["records"] for f in files if f["format"] == "parquet") == 300
    for f in files:
        body = world.file(f["path"])
        assert f["path"].startswith("records/phase=product/part-")
        assert (f["bytes"], f["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert [f.path for f in result.files] == [f["path"] for f in files]
    assert manifest["workflow"]["name"] == "shop"
    assert manifest["workflow"]["source"] == "name: shop  # as put\n"
    assert manifest["workflow"]["overrides"] == ["max_depth=2"]
    assert manifest["workflow"]["spec"]["max_depth"] == 2  # as run
    assert manifest["counts"]["records"] == 300
    assert manifest["status"] == "completed" and manifest["tenant"] == "default"
    assert manifest["trawl_version"]
    phases = {p["name"]: p for p in manifest["phases"]}
    assert (phases["listing"]["engine"], phases["product"]["engine"]) == ("http", "browser")
    assert phases["listing"]["records"] == 0
    assert phases["product"]["schema"]["data.specs"] == "map<string, string>"
    assert phases["product"]["schema"]["data.images"] == "list<string>"
    assert phases["product"]["schema"]["data.reviews"] == "json"
    assert phases["product"]["schema"]["data.price"] == "float64"


async def test_empty_lists_are_lists_in_every_format(world: World) -> None:
    execution = await world.execution()
    await world.part("a", 1, line("product", "http://h/p/1", 1, product(6)))  # no images, specs
    options = ExportOptions(csv=True)

    await build_export(world.blobs, world.state, execution, options=options)

    [record] = exported_records(world.root / "ex")
    assert (record["data"]["images"], record["data"]["specs"]) == ([], {})
    base = "records/phase=product/part-00000"
    [jsonl] = gzip.decompress(world.file(f"{base}.jsonl.gz")).splitlines()
    assert json.loads(jsonl)["data"]["images"] == []
    [row] = pq.read_table(io.BytesIO(world.file(f"{base}.parquet"))).to_pylist()
    assert row["data"]["images"] == [] and row["data"]["specs"] == []  # a map: no pairs
    assert "phase" not in row  # the partition, in the path
    assert row["fetched_at"] == datetime(2026, 11, 23, 9, 10, 27, tzinfo=UTC)
    assert json.loads(row["data"]["reviews"]) == [{"stars": 1}]  # json as its text
    text = gzip.decompress(world.file(f"{base}.csv.gz")).decode()
    [cells] = csv.DictReader(io.StringIO(text))
    assert (cells["data.images"], cells["data.specs"], cells["data.in_stock"]) == (
        "[]",
        "{}",
        "true",
    )
    assert "phase" not in cells


async def test_a_value_of_another_type_is_null_in_parquet_and_kept_in_json(
    world: World,
) -> None:
    execution = await world.execution()
    await world.part(
        "a",
        1,
        line("product", "http://h/p/1", 1, product(1, price="n/a")),
        line("product", "http://h/p/2", 1, product(2)),
    )
    await build_export(world.blobs, world.state, execution)
    rows = pq.read_table(
        io.BytesIO(world.file("records/phase=product/part-00000.parquet"))
    ).to_pylist()
    assert [r["data"]["price"] for r in rows] == [None, 3.0]
    assert [r["data"]["price"] for r in exported_records(world.root / "ex")] == ["n/a", 3.0]
    [info] = [p for p in world.manifest()["phases"] if p["name"] == "product"]
    assert info["values_nulled"] == 1


async def test_a_rebuild_removes_the_files_it_no_longer_writes(world: World) -> None:
    execution = await world.execution()
    lines = [line("product", f"http://h/p/{n:03d}", 1, product(n)) for n in range(200)]
    await world.part("a", 1, *lines)
    await build_export(world.blobs, world.state, execution, options=TINY)
    assert len(world.manifest()["files"]) > 2
    await build_export(world.blobs, world.state, execution)  # one file per format now
    on_disk = sorted(
        p.name for p in (world.root / "ex" / "export" / "records" / "phase=product").iterdir()
    )
    assert on_disk == ["part-00000.jsonl.gz", "part-00000.parquet"]
    assert len(exported_records(world.root / "ex")) == 200


async def test_the_outputs_name_the_manifest_first_with_every_record(world: World) -> None:
    execution = await world.execution()
    await world.part("a", 1, line("product", "http://h/p/1", 1, product(1)))
    await build_export(world.blobs, world.state, execution)
    outputs = [(o.path, o.kind, o.records) for o in await world.state.outputs("ex")]
    assert outputs == [
        ("ex/export/manifest.json", "export", 1),
        ("ex/export/records/phase=product/part-00000.jsonl.gz", "export", 1),
        ("ex/export/records/phase=product/part-00000.parquet", "export", 1),
        ("ex/export/summary.json", "summary", 0),
    ]


async def test_latest_points_at_the_newest_execution_whenever_each_finishes(
    world: World,
) -> None:
    older = await world.execution("old", created_at=T0)
    newer = await world.execution("new", created_at=T0 + timedelta(hours=1))
    cancelled = await world.execution(
        "stopped", status="cancelled", created_at=T0 + timedelta(hours=2)
    )
    pointer = world.root / latest_path("default", "shop")

    def named() -> str:
        return msgspec.json.decode(pointer.read_bytes(), type=LatestPointer).execution_id

    await build_export(world.blobs, world.state, newer)
    assert named() == "new"
    await build_export(world.blobs, world.state, older)  # finished late: left alone
    assert named() == "new"
    await build_export(world.blobs, world.state, cancelled)  # not completed: no pointer
    assert named() == "new"
    assert json.loads(pointer.read_text())["manifest"] == "new/export/manifest.json"


async def test_a_cancel_exports_every_record_it_counted(world: World) -> None:
    """Tasks counted before the counters froze have their records in the export; a part
    written after the export was built changes neither."""
    await world.execution(status="running")
    urls = [f"http://h/p/{n}" for n in range(4)]
    await world.state.add_tasks("ex", urls)
    for n, url in enumerate(urls[:3]):  # the sink: part file, then the count
        await world.part("w", n, line("product", url, 1, product(n)))
        result = TaskResult(
            key=url, url=url, phase="product", depth=1, outcome="succeeded", records=1
        )
        await world.state.finish_tasks("ex", [result])
    await world.state.transition("ex", "cancelled", from_statuses={"running"})

    assert await settle_cancel(world.state, world.blobs, "ex", now=T0 + timedelta(hours=1))

    exported = [r["url"] for r in exported_records(world.root / "ex")]
    progress = await world.state.progress("ex")
    assert exported == urls[:3] and progress.records == 3
    assert world.manifest()["status"] == "cancelled"
    assert not (world.root / latest_path("default", "shop")).exists()
