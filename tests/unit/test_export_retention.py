"""The bucket's lifecycle rules (deploy/gcs-lifecycle.json) tell Trawl's objects apart by
name as GCS matches them (a suffix, then the age): part files and leftover sort runs go
first, the export's files later, and the ``latest`` pointers never."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.paths import (
    dataset_file,
    failures_path,
    in_export,
    latest_path,
    manifest_path,
    part_path,
    run_path,
    summary_path,
)

LIFECYCLE = Path(__file__).resolve().parents[2] / "deploy" / "gcs-lifecycle.json"


def rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = json.loads(LIFECYCLE.read_text())["lifecycle"]["rule"]
    assert all(rule["action"] == {"type": "Delete"} for rule in rules)
    return rules


def deleted_after(name: str, prefix: str = "") -> int | None:
    """The age in days at which a rule deletes object ``prefix + name`` (None: never)."""
    full = prefix + name
    ages = [
        rule["condition"]["age"]
        for rule in rules()
        if any(full.endswith(s) for s in rule["condition"].get("matchesSuffix", []))
        and full.startswith(rule["condition"].get("matchesPrefix", [""])[0])
    ]
    return min(ages) if ages else None


def test_parts_and_runs_go_first_the_export_later_the_pointers_never() -> None:
    execution = "9f0c1e2d3c4b5a69788796a5b4c3d2e1"
    parts = [part_path(execution, "product", "host-12-ab12cd", seq) for seq in (1, 10, 999999)]
    runs = [run_path(execution, "0a1b2c3d4e5f", 3, 17)]
    export = [
        manifest_path(execution),
        summary_path(execution),
        failures_path(execution),
        *(in_export(execution, dataset_file("product", 12, f)) for f in ("jsonl", "parquet")),
        in_export(execution, dataset_file("listing", 0, "csv")),
    ]
    pointers = [latest_path("acme", "manifest"), latest_path("export", "summary")]
    for prefix in ("", "trawl/"):  # with or without TRAWL_GCS_PREFIX
        assert {deleted_after(n, prefix) for n in parts + runs} == {30}
        assert {deleted_after(n, prefix) for n in export} == {365}
        assert {deleted_after(n, prefix) for n in pointers} == {None}
