"""Building an execution's export from its part files: streamed, in bounded memory.

1. The part files are sorted by record key (phase, url, depth) with an external merge sort
   (sort.py): bounded chunks in memory, sorted runs spilled to the blob store.
2. The merged lines are read in order and the first of each (phase, url) is kept: the
   exactly-once rule, the lowest depth, then the first read. The others are counted as
   ``duplicate_records_dropped``.
3. Each phase's records go to its dataset (formats.py): ``records/phase=<phase>/`` files in
   gzipped JSON lines, Parquet and optionally CSV, rolled at ``file_bytes``, uploaded as they
   are finished. Files of an earlier build of this export that this one did not write are
   deleted (a rebuild after a resume may roll differently).
4. ``failures.jsonl``, then ``manifest.json`` (manifest.py), then for a completed execution
   the workflow's ``latest.<tenant>.<workflow>.json`` pointer, and last ``summary.json``:
   whoever sees the summary (a cancel being settled, worker/reconcile.py) sees a whole
   export.

The export is a function of the part files and the execution, so two workers building it at
once write the same objects under the same names; each sorts in runs of its own (a build
id in their names). After a cancel the part files of every counted task are there (the
sink writes a part before counting its tasks, and the counters are frozen before the export
is built), so every counted record is exported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from backends.blobs import BlobStore
from backends.errors import PermanentError
from backends.state import Execution, OutputKind, OutputObject, StateStore, WarningExample
from worker.context import execution_workflow
from worker.export.cpu import on_cpu, release_memory
from worker.export.failures import write_failures
from worker.export.manifest import (
    Counts,
    LatestPointer,
    Manifest,
    ManifestFile,
    PhaseInfo,
    WorkflowRun,
    encode,
    point_latest,
    trawl_version,
)
from worker.export.schema import PhaseSchema, schemas_of, unknown_phase
from worker.export.sort import ExternalSort, SortOptions, split_line
from worker.paths import (
    failures_path,
    in_export,
    manifest_path,
    parts_prefix,
    records_path,
    summary_path,
)
from worker.report import ExecutionReport
from workflows import Workflow

if TYPE_CHECKING:
    from worker.export.formats import FinishedFile, PhaseWriter

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_TRUE = {"1", "true", "yes", "on"}
DEFAULT_FILE_BYTES = 64 << 20
PARTS_AHEAD = 8  # part files read at once while sorting


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """How an export is written. ``file_bytes``: a dataset file is finished once its JSON
    lines reach this many bytes, uncompressed (``TRAWL_EXPORT_FILE_BYTES``); ``csv``: write
    gzipped CSV beside the JSON lines and Parquet (``TRAWL_EXPORT_CSV``); ``row_group_bytes``:
    Parquet row groups of about this much JSON; ``sort``: the external sort's memory."""

    file_bytes: int = DEFAULT_FILE_BYTES
    csv: bool = False
    row_group_bytes: int = 4 << 20
    sort: SortOptions = field(default_factory=SortOptions)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExportOptions:
        """The options the ``TRAWL_EXPORT_*`` settings give (trawl/settings.py checks them
        when a process starts; a bad value here keeps the default)."""
        if env is None:
            raw_bytes = os.environ.get("TRAWL_EXPORT_FILE_BYTES", "")
            raw_csv = os.environ.get("TRAWL_EXPORT_CSV", "")
        else:
            raw_bytes = env.get("TRAWL_EXPORT_FILE_BYTES", "")
            raw_csv = env.get("TRAWL_EXPORT_CSV", "")
        file_bytes = DEFAULT_FILE_BYTES
        if raw_bytes.strip():
            try:
                file_bytes = max(1, int(raw_bytes))
            except ValueError:
                log.warning("TRAWL_EXPORT_FILE_BYTES=%r is not an integer", raw_bytes)
        return cls(file_bytes=file_bytes, csv=raw_csv.strip().lower() in _TRUE)


class ExportResult(msgspec.Struct, frozen=True):
    """What ``build_export`` wrote. ``export_path`` is the records folder (one dataset per
    phase under it), the others are object names; ``files`` the dataset files."""

    records: int
    duplicates_dropped: int
    export_path: str
    summary_path: str
    failures: int = 0
    failures_path: str = ""
    warning_examples: list[WarningExample] = []
    manifest_path: str = ""
    files: list[ManifestFile] = []


async def build_export(
    blobs: BlobStore,
    state: StateStore,
    execution: Execution,
    *,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Write the export of ``execution`` (module docstring) and register its objects."""
    options = options or ExportOptions.from_env()
    execution_id = execution.id
    run, workflow = await _workflow_run(state, execution)
    datasets = _Datasets(
        blobs, state, execution_id, schemas_of(workflow) if workflow else {}, options
    )
    await _write_datasets(blobs, execution_id, datasets, options)
    failures_file = failures_path(execution_id)
    failures = await write_failures(blobs, state, execution_id, failures_file)
    examples = await state.warning_examples(execution_id)
    report = msgspec.structs.replace(
        ExecutionReport.of(execution, await state.progress(execution_id)),
        records=datasets.records,
        duplicate_records_dropped=datasets.duplicates,
        warning_examples=examples,
    )
    manifest = Manifest(
        trawl_version=trawl_version(),
        execution_id=execution_id,
        tenant=execution.tenant,
        workflow=run,
        status=execution.status,
        error=execution.error,
        created_at=execution.created_at,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        counts=Counts(
            pages=report.pages,
            records=datasets.records,
            duplicate_records_dropped=datasets.duplicates,
            failures=failures,
            by_phase=report.by_phase,
            failures_by_class=report.failures_by_class,
            warnings=report.warnings,
        ),
        phases=datasets.phases(workflow),
        files=datasets.files,
    )
    # The manifest is an export output counting every record: the first of them by name.
    manifest_body = encode(manifest)
    await _write_object(
        state,
        blobs,
        execution_id,
        manifest_path(execution_id),
        manifest_body,
        kind="export",
        records=datasets.records,
    )
    if execution.status == "completed":
        await point_latest(blobs, _pointer(execution, datasets.records))
    summary = msgspec.json.format(_encoder.encode(report.summary_view()), indent=2) + b"\n"
    await _write_object(
        state, blobs, execution_id, summary_path(execution_id), summary, kind="summary"
    )
    return ExportResult(
        datasets.records,
        datasets.duplicates,
        records_path(execution_id),
        summary_path(execution_id),
        failures,
        failures_file,
        examples,
        manifest_path(execution_id),
        datasets.files,
    )


async def _write_datasets(
    blobs: BlobStore, execution_id: str, datasets: _Datasets, options: ExportOptions
) -> None:
    """Sort the part files, keep one record per key, write each phase's dataset, and delete
    what an earlier build wrote that this one did not."""
    sorter = ExternalSort(blobs, execution_id, uuid.uuid4().hex[:12], options.sort)
    try:
        parts = [part.path for part in await blobs.list(parts_prefix(execution_id))]
        async for data in read_ahead(blobs, parts, PARTS_AHEAD):
            await sorter.add(data)
        last: tuple[str, str] | None = None
        async for batch in sorter.sorted():
            kept: list[tuple[str, bytes]] = []
            for sortable in batch:
                phase, url, line = split_line(sortable)
                if (phase, url) == last:  # a later copy: deeper, or read after the first
                    datasets.duplicates += 1
                    continue
                last = (phase, url)
                kept.append((phase, line))
            await datasets.add(kept)
        await datasets.finish()
    finally:
        await sorter.close()
    await datasets.remove_stale()


async def _write_object(
    state: StateStore,
    blobs: BlobStore,
    execution_id: str,
    path: str,
    body: bytes,
    *,
    kind: OutputKind,
    records: int = 0,
) -> None:
    """Write one of the export's objects and register it as an output of the execution."""
    await blobs.write(path, body)
    output = OutputObject(path=path, size_bytes=len(body), records=records, kind=kind)
    await state.add_output(execution_id, output)


def _pointer(execution: Execution, records: int) -> LatestPointer:
    return LatestPointer(
        tenant=execution.tenant,
        workflow=execution.workflow,
        workflow_version=execution.workflow_version,
        execution_id=execution.id,
        created_at=execution.created_at,
        finished_at=execution.finished_at,
        records=records,
        manifest=manifest_path(execution.id),
    )


async def _workflow_run(
    state: StateStore, execution: Execution
) -> tuple[WorkflowRun, Workflow | None]:
    """The workflow as ``execution`` ran it (None when its stored version is gone)."""
    overrides = [str(o) for o in execution.params.get("set") or []]
    stored = await state.get_workflow(
        execution.tenant, execution.workflow, execution.workflow_version
    )
    if stored is None:
        run = WorkflowRun(
            name=execution.workflow,
            version=max(1, execution.workflow_version),
            source="",
            overrides=overrides,
        )
        return run, None
    try:
        workflow: Workflow | None = execution_workflow(execution, stored.spec_json)
    except PermanentError as exc:  # its overrides no longer apply: describe what is known
        log.warning("export without the workflow's schema: %s", exc)
        workflow = None
    spec = msgspec.to_builtins(workflow) if workflow is not None else {}
    run = WorkflowRun(
        name=stored.name,
        version=stored.version,
        source=stored.source_text,
        overrides=overrides,
        spec=spec,
    )
    return run, workflow


async def read_ahead(blobs: BlobStore, paths: list[str], ahead: int) -> AsyncIterator[bytes]:
    """The objects at ``paths``, in order, up to ``ahead`` of them read at once (a part
    file is small: reading them one after another would wait on GCS's latency each time)."""
    pending: deque[asyncio.Task[bytes]] = deque()
    try:
        for path in paths:
            pending.append(asyncio.ensure_future(blobs.read(path)))
            if len(pending) >= ahead:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in pending:
            if not task.cancelled():
                task.exception()  # read: the error that stopped us is already raised


class _Datasets:
    """The phases' datasets as the merged records come in: one writer at a time (the
    records come phase by phase), its CPU work in a thread, its files uploaded as they are
    finished and registered as outputs."""

    def __init__(
        self,
        blobs: BlobStore,
        state: StateStore,
        execution_id: str,
        schemas: dict[str, PhaseSchema],
        options: ExportOptions,
    ) -> None:
        self._blobs = blobs
        self._state = state
        self._execution_id = execution_id
        self._schemas = schemas
        self._options = options
        self._writer: PhaseWriter | None = None
        self.written: dict[str, PhaseWriter] = {}
        self.files: list[ManifestFile] = []
        self.records = 0
        self.duplicates = 0

    async def add(self, lines: list[tuple[str, bytes]]) -> None:
        start = 0
        while start < len(lines):
            phase = lines[start][0]
            end = start
            while end < len(lines) and lines[end][0] == phase:
                end += 1
            writer = await self._writer_for(phase)
            batch = [line for _, line in lines[start:end]]
            await self._upload(await on_cpu(writer.add, batch))
            start = end

    async def _writer_for(self, phase: str) -> PhaseWriter:
        if self._writer is not None and self._writer.schema.phase == phase:
            return self._writer
        await self.finish()
        # Imported here: pyarrow weighs some 40 MB, paid by a worker only once it exports.
        from worker.export.formats import PhaseWriter

        schema = self._schemas.get(phase) or unknown_phase(phase)
        self._writer = PhaseWriter(
            schema,
            file_bytes=self._options.file_bytes,
            row_group_bytes=self._options.row_group_bytes,
            csv=self._options.csv,
        )
        self.written[phase] = self._writer
        return self._writer

    async def finish(self) -> None:
        """Finish the phase at hand."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await self._upload(await on_cpu(writer.finish))
            self.records += writer.records

    async def _upload(self, finished: list[FinishedFile]) -> None:
        if not finished:
            return
        for file in finished:
            path = in_export(self._execution_id, file.relative)
            await self._blobs.write(path, file.data)
            await self._state.add_output(
                self._execution_id,
                OutputObject(
                    path=path, size_bytes=len(file.data), records=file.records, kind="export"
                ),
            )
            self.files.append(
                ManifestFile(
                    path=file.relative,
                    format=file.format,
                    phase=file.phase,
                    bytes=len(file.data),
                    records=file.records,
                    sha256=file.sha256,
                )
            )
        finished.clear()
        release_memory()  # the files' bytes are uploaded and gone

    async def remove_stale(self) -> None:
        """Delete dataset files an earlier build wrote and this one did not."""
        ours = {in_export(self._execution_id, f.path) for f in self.files}
        for blob in await self._blobs.list(records_path(self._execution_id) + "/"):
            if blob.path not in ours:
                await self._blobs.delete(blob.path)

    def phases(self, workflow: Workflow | None) -> list[PhaseInfo]:
        """Every phase of the workflow, then any other phase that has records."""
        infos: list[PhaseInfo] = []
        named: set[str] = set()
        if workflow is not None:
            for phase in workflow.phases:
                named.add(phase.name)
                infos.append(self._info(phase.name, workflow.engine_of(phase)))
        infos.extend(self._info(phase, "") for phase in sorted(set(self.written) - named))
        return infos

    def _info(self, phase: str, engine: str) -> PhaseInfo:
        writer = self.written.get(phase)
        schema = self._schemas.get(phase) or (writer.schema if writer is not None else None)
        return PhaseInfo(
            name=phase,
            engine=engine,
            records=writer.records if writer is not None else 0,
            values_nulled=writer.nulled if writer is not None else 0,
            schema=schema.describe() if schema is not None else {},
        )
