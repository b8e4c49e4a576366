"""``trawl status``, ``trawl failures list`` and ``trawl export`` on an embedded run's output.

``trawl run --out DIR`` writes ``DIR/<execution>/export/`` (manifest.json, summary.json,
failures.jsonl and the datasets under records/). These commands take ``DIR`` (its newest
execution) or ``DIR/<execution>`` in place of an execution id and read those files: no
Postgres, no cloud storage. ``exported_records`` reads a run's records back in one call.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from backends.local import LocalBlobStore
from backends.state import WarningExample
from trawl.cli_common import EXIT_OK, CommandError
from worker.export import describe_warnings
from worker.export_read import with_phase, write_export
from worker.report import report_lines

EXPORT_DIR = "export"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"


def is_local(target: str) -> bool:
    """Whether a command's ID argument names an output directory rather than an id."""
    return Path(target).is_dir()


def execution_dir(target: str) -> Path:
    """``target`` itself when it holds an export, else its newest execution that does."""
    path = Path(target)
    if (path / EXPORT_DIR / SUMMARY).is_file():
        return path
    runs = [child for child in path.iterdir() if (child / EXPORT_DIR / SUMMARY).is_file()]
    if not runs:
        raise CommandError(
            f"{target}: no finished run here (no <execution>/{EXPORT_DIR}/{SUMMARY}); "
            "give the --out directory of `trawl run` or one execution in it",
            1,
        )
    return max(runs, key=lambda run: ((run / EXPORT_DIR / SUMMARY).stat().st_mtime, run.name))


def read_summary(run: Path) -> dict[str, Any]:
    file = run / EXPORT_DIR / SUMMARY
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CommandError(f"{file}: cannot read the run's summary: {error}", 1) from None
    if not isinstance(summary, dict):
        raise CommandError(f"{file}: not a summary (a JSON object was expected)", 1)
    return summary


def cmd_status(target: str, *, as_json: bool) -> int:
    """The status of a local run, printed like a distributed execution's."""
    run = execution_dir(target)
    summary = read_summary(run)
    failures_file = run / EXPORT_DIR / FAILURES
    if as_json:
        print(json.dumps({**summary, "path": str(run)}, indent=2))
        return EXIT_OK
    pages = summary.get("pages", {})
    print(
        f"execution {summary.get('execution_id', run.name)} ({summary.get('workflow')} "
        f"v{summary.get('workflow_version')}, local {run}): {summary.get('status')}"
    )
    print(
        f"pages: {pages.get('finished', 0)}/{pages.get('published', 0)} finished, "
        f"{pages.get('succeeded', 0)} succeeded, {pages.get('failed', 0)} failed, "
        f"{pages.get('filtered', 0)} filtered; records {summary.get('records', 0)}"
    )
    for line in report_lines(summary):
        print(line)
    failures = summary.get("failures_by_class") or {}
    if failures:
        print(f"failures: {', '.join(f'{k} {v}' for k, v in sorted(failures.items()))}")
        if failures_file.is_file():
            print(f"failed pages: {failures_file}")
    warnings = summary.get("warnings") or {}
    if warnings:
        examples = _examples(summary.get("warning_examples") or [])
        print(f"warnings: {describe_warnings(warnings, examples)}")
    return EXIT_OK


def _examples(raw: list[Any]) -> list[WarningExample]:
    try:
        return msgspec.convert(raw, list[WarningExample])
    except msgspec.ValidationError:
        return []  # an older summary.json: counts only


def cmd_failures_list(target: str, *, limit: int) -> int:
    """The run's failed pages from failures.jsonl, newest first, at most ``limit``."""
    run = execution_dir(target)
    file = run / EXPORT_DIR / FAILURES
    if not file.is_file():
        raise CommandError(f"{file}: no such file (a run before failures.jsonl existed?)", 1)
    newest: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(limit, 0))
    with file.open(encoding="utf-8") as lines_in:
        for number, line in enumerate(lines_in, 1):
            if not line.strip():
                continue
            try:
                newest.append(json.loads(line))
            except ValueError:
                raise CommandError(f"{file}:{number}: not a JSON line", 1) from None
    for failure in reversed(newest):
        at = str(failure.get("at") or "").replace("T", " ").removesuffix("Z")
        print(f"{at} {failure.get('error_class')} {failure.get('url')}")
        print(
            f"    {failure.get('message')} (attempt {failure.get('attempts')}, "
            f"phase {failure.get('phase')})"
        )
    print(f"{len(newest)} failure(s)", file=sys.stderr)
    return EXIT_OK


def cmd_export(target: str, fmt: str, out: BinaryIO, phase: str | None = None) -> int:
    """Write the run's records (of ``phase``, or all) to ``out`` as JSONL, CSV or Parquet;
    the count."""
    run = execution_dir(target)
    if not (run / EXPORT_DIR / MANIFEST).is_file():
        raise CommandError(f"{run / EXPORT_DIR / MANIFEST}: no such file", 1)
    return asyncio.run(write_export(LocalBlobStore(run.parent), run.name, fmt, out, phase))


def exported_lines(run: Path, phase: str | None = None) -> list[str]:
    """The records a local run exported (``DIR/<execution>``), as JSON lines, phase by phase
    and by URL: what ``trawl export`` prints."""
    export = run / EXPORT_DIR
    manifest = json.loads((export / MANIFEST).read_text(encoding="utf-8"))
    out: list[str] = []
    for file in manifest["files"]:
        if file["format"] != "jsonl" or (phase is not None and file["phase"] != phase):
            continue
        body = gzip.decompress((export / file["path"]).read_bytes())
        out.extend(
            with_phase(line, file["phase"]).decode("utf-8")
            for line in body.split(b"\n")
            if line.strip()
        )
    return out


def exported_records(run: Path, phase: str | None = None) -> list[dict[str, Any]]:
    """``exported_lines`` decoded."""
    return [json.loads(line) for line in exported_lines(run, phase)]
