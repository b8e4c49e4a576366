"""The types of a phase's records from its workflow, as the manifest shows them; the
manifest's JSON Schema as committed; the export's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trawl.settings import Settings
from worker.export import ExportOptions
from worker.export.manifest import manifest_schema
from worker.export.schema import (
    JSON,
    STRING,
    ListOf,
    MapOf,
    Scalar,
    StructOf,
    describe,
    field_type,
    fill_empty,
    parse_type,
    schemas_of,
)
from workflows import validate_data
from workflows.spec import Field

ROOT = Path(__file__).resolve().parents[2]


def field(**spec: Any) -> Field:
    return Field(**spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (field(css="h1"), "string"),
        (field(css="h1", type="html"), "string"),
        (field(css=".n", type="int"), "int64"),
        (field(css=".p", type="float"), "float64"),
        (field(css=".s", type="bool", default=False), "bool"),
        (field(css="img", attr="src", multiple=True), "list<string>"),
        (field(css=".n", type="int", multiple=True), "list<int64>"),
        (
            field(css="tr", multiple=True, fields={"key": "th", "value": "td"}, as_="object"),
            "map<string, string>",
        ),
        (
            field(
                css="tr",
                multiple=True,
                fields={"key": "th", "value": field(css="td", type="float")},
                as_="object",
            ),
            "map<string, float64>",
        ),
        (
            field(css=".v", multiple=True, fields={"size": "b", "n": field(css="i", type="int")}),
            "list<struct<size: string, n: int64>>",
        ),
        (field(css=".p", type="float", default="n/a"), "json"),  # a default of another type
        (field(css="img", multiple=True, default=[]), "list<string>"),
    ],
)
def test_an_extract_fields_type(spec: Field, expected: str) -> None:
    kind = field_type(spec)
    assert describe(kind) == expected
    assert parse_type(expected) == kind


def test_a_phase_schema_has_the_envelope_then_the_fields_of_its_nodes() -> None:
    workflow = validate_data(
        {
            "name": "w1",
            "start_urls": ["http://h/"],
            "phases": [
                {
                    "name": "page",
                    "nodes": [
                        {"type": "extract", "fields": {"title": "h1", "n": "b"}},
                        {"type": "extract", "fields": {"n": {"css": "i", "type": "int"}}},
                        {"type": "script", "code": "() => 1", "as": "js"},
                        {"type": "extract_links", "selector": "a", "marker": "next"},
                    ],
                    "transitions": [{"when": {"marker": "next"}, "to": "links"}],
                },
                {"name": "links", "nodes": [{"type": "extract_links", "selector": "a"}]},
            ],
        }
    )
    [(name, schema)] = schemas_of(workflow).items()
    assert (name, schema.engine) == ("page", "browser")
    described = schema.describe()
    assert list(described)[:4] == ["execution_id", "workflow", "phase", "url"]
    assert described["fetched_at"] == "timestamp"
    assert described["depth"] == "int64"
    # Two nodes write n with different types: any JSON; a script's value: any JSON.
    assert {k: v for k, v in described.items() if k.startswith("data.")} == {
        "data.title": "string",
        "data.n": "json",
        "data.js": "json",
    }


def test_null_lists_and_maps_become_empty_ones_nested_too() -> None:
    kind = StructOf(
        (
            ("tags", ListOf(STRING)),
            ("specs", MapOf(STRING)),
            ("rows", ListOf(StructOf((("cells", ListOf(Scalar("int64"))),)))),
            ("any", JSON),
        )
    )
    value = {"tags": None, "specs": None, "rows": [{"cells": None}, {"cells": [1]}], "any": None}
    assert fill_empty(kind, value) == {
        "tags": [],
        "specs": {},
        "rows": [{"cells": []}, {"cells": [1]}],
        "any": None,
    }


def test_the_committed_manifest_schema_is_the_generated_one() -> None:
    committed = json.loads((ROOT / "docs" / "manifest.schema.json").read_text())
    assert committed == manifest_schema(), (
        "docs/manifest.schema.json is stale: regenerate it from "
        "worker.export.manifest.manifest_schema() (docs/exports.md says how)"
    )


def test_the_export_settings_come_from_the_environment() -> None:
    assert ExportOptions.from_env({}) == ExportOptions()
    defaults = Settings()  # the names and defaults trawl/settings.py documents
    assert (defaults.export_file_bytes, defaults.export_csv) == (
        ExportOptions().file_bytes,
        ExportOptions().csv,
    )
    options = ExportOptions.from_env({"TRAWL_EXPORT_FILE_BYTES": "1000", "TRAWL_EXPORT_CSV": "1"})
    assert (options.file_bytes, options.csv) == (1000, True)
    assert ExportOptions.from_env({"TRAWL_EXPORT_FILE_BYTES": "lots"}).file_bytes == (
        ExportOptions().file_bytes
    )
