"""The manifest of an export (``<execution>/export/manifest.json``), the ``latest`` pointer.

The manifest says what produced the export (Trawl's version, the workflow as it ran: its
stored source, the ``--set`` overrides and the resulting spec, the engine of each phase),
when and how the execution ended, its counts, the schema of each phase's records, and every
dataset file with its size, record count and SHA-256. It is written after the files it
lists, so a reader that finds it finds them all. Its JSON Schema is ``manifest_schema()``,
committed as docs/manifest.schema.json.

``latest.<tenant>.<workflow>.json``, at the top of the store, names the newest completed
execution of a workflow and its manifest. An export replaces it only if its execution was
created later (then finished later) than the one it names, so an old execution finishing
late leaves a newer one's pointer alone. Two exports writing it at the very same moment may
still race (read, compare, write); the next completed export of the workflow settles it.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from backends.blobs import BlobNotFound, BlobStore
from backends.state import ExecutionStatus
from worker.paths import latest_path
from worker.report import Pages

MANIFEST_VERSION = 1


def trawl_version() -> str:
    """The installed Trawl's version (the source tree's when it is not installed)."""
    try:
        return importlib.metadata.version("trawl")
    except importlib.metadata.PackageNotFoundError:
        from workflows.version import __version__

        return __version__


class _Struct(msgspec.Struct, frozen=True, kw_only=True):
    """Unknown fields are ignored on reading: a newer Trawl may add some."""


class ManifestFile(_Struct, frozen=True, kw_only=True):
    """One dataset file."""

    path: Annotated[str, Meta(description="relative to the folder holding manifest.json")]
    format: Annotated[
        Literal["jsonl", "parquet", "csv"],
        Meta(description="jsonl: gzipped JSON lines; parquet: zstd; csv: gzipped"),
    ]
    phase: str
    bytes: Annotated[int, Meta(ge=0, description="the file's size")]
    records: Annotated[int, Meta(ge=0)]
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description="of the file's bytes")]


_ENGINE = "browser or http; empty for a phase the workflow does not name"
_NULLED = (
    "values that did not have their column's type: null in Parquet and CSV, kept in the JSON lines"
)
_SCHEMA = (
    "column -> type: string, int64, float64, bool, timestamp, json, list<T>, "
    "map<string, T>, struct<name: T, ...>; data.<field> for each field the phase extracts "
    "(data when the workflow does not describe them); empty for a phase without records"
)


class PhaseInfo(_Struct, frozen=True, kw_only=True):
    """One phase of the workflow: its engine, its records and their schema."""

    name: str
    engine: Annotated[str, Meta(description=_ENGINE)]
    records: Annotated[int, Meta(ge=0, description="records in the export")] = 0
    values_nulled: Annotated[int, Meta(ge=0, description=_NULLED)] = 0
    schema: Annotated[dict[str, str], Meta(description=_SCHEMA)] = {}


class WorkflowRun(_Struct, frozen=True, kw_only=True):
    """The workflow as the execution ran it: the stored source, the execution's ``--set``
    overrides applied to it, and the validated spec that resulted (defaults filled in)."""

    name: str
    version: Annotated[int, Meta(ge=1, description="the stored version")]
    source: Annotated[str, Meta(description="the stored source text (YAML or JSON)")]
    overrides: Annotated[list[str], Meta(description="key=value, in order")] = []
    spec: dict[str, Any] = {}


class Counts(_Struct, frozen=True, kw_only=True):
    """The execution's counters when the export was written (summary.json has them all)."""

    pages: Pages
    records: Annotated[int, Meta(ge=0, description="records in the export")]
    duplicate_records_dropped: Annotated[int, Meta(ge=0)] = 0
    failures: Annotated[int, Meta(ge=0, description="lines of failures.jsonl")] = 0
    by_phase: dict[str, dict[str, int]] = {}
    failures_by_class: dict[str, int] = {}
    warnings: dict[str, int] = {}


_FILES = "every dataset file, by phase, then index, then format"
_RECORDS = "the datasets' folder, relative to manifest.json: <records_path>/phase=<phase>/"


class Manifest(_Struct, frozen=True, kw_only=True):
    """What an export of a Trawl execution holds and what produced it."""

    manifest_version: Annotated[int, Meta(description="this document's format")] = MANIFEST_VERSION
    trawl_version: str
    execution_id: str
    tenant: str
    workflow: WorkflowRun
    status: ExecutionStatus
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts: Counts
    phases: list[PhaseInfo]
    files: Annotated[list[ManifestFile], Meta(description=_FILES)]
    records_path: Annotated[str, Meta(description=_RECORDS)] = "records"
    summary_path: str = "summary.json"
    failures_path: str = "failures.jsonl"


class LatestPointer(_Struct, frozen=True, kw_only=True):
    """The newest completed export of a tenant's workflow."""

    tenant: str
    workflow: str
    workflow_version: int
    execution_id: str
    created_at: datetime
    finished_at: datetime | None = None
    records: int = 0
    manifest: Annotated[str, Meta(description="the manifest's name, beside this pointer's")]

    def order(self) -> tuple[datetime, float, str]:
        """Newer pointers sort after older ones: created, then finished, then the id."""
        finished = self.finished_at.timestamp() if self.finished_at else 0.0
        return (self.created_at, finished, self.execution_id)


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.json (docs/manifest.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Trawl export manifest",
        **msgspec.json.schema(Manifest),
    }


def encode(document: msgspec.Struct) -> bytes:
    """A manifest or pointer as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


_pointer_decoder = msgspec.json.Decoder(LatestPointer)


async def point_latest(blobs: BlobStore, pointer: LatestPointer) -> bool:
    """Write ``pointer`` unless the current one names a newer execution; whether it did."""
    path = latest_path(pointer.tenant, pointer.workflow)
    try:
        raw = await blobs.read(path)
    except BlobNotFound:
        if await blobs.write(path, encode(pointer), if_absent=True):
            return True
        return await point_latest(blobs, pointer)  # written meanwhile: compare with it
    try:
        current: LatestPointer | None = _pointer_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        current = None  # unreadable: replaced
    if current is not None and current.order() > pointer.order():
        return False
    await blobs.write(path, encode(pointer))
    return True
