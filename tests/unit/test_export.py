"""The export keeps one record per (phase, url), whatever the part files repeat."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore
from backends.state import Execution
from trawl.local_outputs import exported_records
from worker.export import build_export
from worker.paths import part_path


def record(url: str, depth: int, title: str = "t") -> bytes:
    body = {"phase": "page", "url": url, "depth": depth, "data": {"title": title}}
    return json.dumps(body).encode() + b"\n"


async def test_duplicates_keep_the_shallowest_copy_then_the_first(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    state = MemoryStateStore()
    execution = Execution(id="ex-1", workflow="w", workflow_version=1, created_at=datetime.now(UTC))
    await state.create_execution(execution)
    # Worker a saw /x at depth 3 (after a lost seen-set); worker b at its true depth 2.
    await blobs.write(
        part_path("ex-1", "page", "a", 0),
        record("http://h/x", 3, "deep") + record("http://h/y", 1, "first"),
    )
    await blobs.write(
        part_path("ex-1", "page", "b", 0),
        record("http://h/x", 2, "shallow") + record("http://h/y", 1, "second"),
    )
    result = await build_export(blobs, state, execution)
    assert (result.records, result.duplicates_dropped) == (2, 2)
    exported = exported_records(tmp_path / "ex-1")
    assert [(r["url"], r["depth"], r["data"]["title"]) for r in exported] == [
        ("http://h/x", 2, "shallow"),
        ("http://h/y", 1, "first"),
    ]
