"""The exactly-once export: every record key once, plus summary.json, written at completion.

Part files may hold a record twice: a redelivered task writes it again, and after Redis lost
its seen-set a URL still in flight can be published again from a deeper page. The record key
(execution_id, canonical url, phase) decides; of its copies the one with the lowest depth
wins (the shortest path to the page, which a crawl without faults records), then the first
read. A copy is kept as the bytes the sink wrote (a ``Record``, worker/records.py); only its
key and depth are decoded. Records are sorted by phase and URL so two exports of the same
crawl can be diffed line by line.

Beside them, failures.jsonl names every task that failed for good (URL, phase, error class,
message, attempts), oldest first, read from the store a page at a time; summary.json is
the execution's report (worker/report.py) as it stands once the export is written, naming
the fields behind the warnings, each with a few example URLs.
"""

from __future__ import annotations

from typing import Any

import msgspec

from backends.blobs import BlobStore
from backends.state import Execution, Failure, OutputObject, StateStore, WarningExample
from worker.paths import export_path, failures_path, parts_prefix, summary_path
from worker.records import KEY_DECODER
from worker.report import ExecutionReport

_encoder = msgspec.json.Encoder()


class ExportResult(msgspec.Struct, frozen=True):
    records: int
    duplicates_dropped: int
    export_path: str
    summary_path: str
    failures: int = 0
    failures_path: str = ""
    warning_examples: list[WarningExample] = []


async def build_export(blobs: BlobStore, state: StateStore, execution: Execution) -> ExportResult:
    """Merge the part files of ``execution`` into its export and summary."""
    execution_id = execution.id
    parts = sorted(await blobs.list(parts_prefix(execution_id)), key=lambda b: b.path)
    by_key: dict[tuple[str, str], tuple[int, bytes]] = {}
    duplicates = 0
    for part in parts:
        data = await blobs.read(part.path)
        for line in data.splitlines():
            if not line.strip():
                continue
            record = KEY_DECODER.decode(line)
            key = (record.phase, record.url)
            kept = by_key.get(key)
            if kept is not None:
                duplicates += 1
                if kept[0] <= record.depth:
                    continue
            by_key[key] = (record.depth, line)
    body = b"".join(by_key[k][1] + b"\n" for k in sorted(by_key))
    records_path = export_path(execution_id)
    await blobs.write(records_path, body)
    await state.add_output(
        execution_id,
        OutputObject(path=records_path, size_bytes=len(body), records=len(by_key), kind="export"),
    )
    failures_file = failures_path(execution_id)
    failures = await _write_failures(blobs, state, execution_id, failures_file)
    progress = await state.progress(execution_id)
    examples = await state.warning_examples(execution_id)
    report = msgspec.structs.replace(
        ExecutionReport.of(execution, progress),
        records=len(by_key),
        duplicate_records_dropped=duplicates,
        warning_examples=examples,
    )
    summary_body = msgspec.json.format(_encoder.encode(report.summary_view()), indent=2) + b"\n"
    summary_file = summary_path(execution_id)
    await blobs.write(summary_file, summary_body)
    await state.add_output(
        execution_id,
        OutputObject(path=summary_file, size_bytes=len(summary_body), records=0, kind="summary"),
    )
    return ExportResult(
        len(by_key), duplicates, records_path, summary_file, failures, failures_file, examples
    )


async def _write_failures(blobs: BlobStore, state: StateStore, execution_id: str, path: str) -> int:
    """failures.jsonl: one line per failed task, encoded as the store hands them over."""
    body = bytearray()
    count = 0
    async for failure in state.iter_failures(execution_id):
        body += _encoder.encode(failure_line(failure)) + b"\n"
        count += 1
    await blobs.write(path, bytes(body))
    return count


def failure_line(failure: Failure) -> dict[str, Any]:
    """One line of failures.jsonl."""
    return {
        "url": failure.url,
        "phase": failure.phase,
        "error_class": failure.error_class,
        "message": failure.message,
        "attempts": failure.attempt,
        "at": _iso(failure.at),
    }


def describe_warnings(warnings: dict[str, int], examples: list[WarningExample]) -> str:
    """``field_conversion 4 (price in phase product: URL, URL)``: each kind with its count,
    then the fields behind it, each with a few example URLs (and its own count when a kind
    has several fields)."""
    parts = []
    for kind, count in sorted(warnings.items()):
        mine = [e for e in examples if e.kind == kind]
        fields = "; ".join(
            f"{e.field} in phase {e.phase}"
            + (f" {e.count}" if len(mine) > 1 else "")
            + (": " + ", ".join(e.urls) if e.urls else "")
            for e in mine
        )
        parts.append(f"{kind} {count}" + (f" ({fields})" if fields else ""))
    return ", ".join(parts)


def _iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
