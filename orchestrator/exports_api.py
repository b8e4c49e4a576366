"""What data consumers read: an execution's export, streamed, and its output objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from backends.blobs import BlobNotFound
from backends.state import TERMINAL_STATUSES
from orchestrator.errors import COMMON, Conflict, Unprocessable
from orchestrator.executions_api import owned
from orchestrator.models import OutputOut
from orchestrator.services import ServicesDep, Tenant
from worker.export_read import (
    ExportAt,
    csv_chunks,
    open_export,
    parquet_chunks,
    parquet_phase,
    pick_phases,
    record_lines,
)

FORMAT_NOTE = (
    "jsonl (default): every record, phase by phase, each phase by URL. csv: the same, nested "
    "fields as dotted columns (data.specs.Volume), lists as JSON text. parquet: one phase's "
    "records as one Parquet file (zstd); give phase when the execution has several phases "
    "with records."
)
PHASE_NOTE = "only the records of this phase"
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv; charset=utf-8"


class ExportsController(Controller):
    path = "/v1/executions/{execution_id:str}"
    tags = ["exports"]

    @get(
        "/records",
        raises=[*COMMON, Conflict, Unprocessable],
        media_type="application/x-ndjson",
    )
    async def get_records(
        self,
        execution_id: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
        format: Annotated[
            Literal["jsonl", "csv", "parquet"], QueryParameter(description=FORMAT_NOTE)
        ] = "jsonl",
        phase: Annotated[str | None, QueryParameter(description=PHASE_NOTE)] = None,
    ) -> Stream:
        """The export (each record once), streamed: JSON lines, CSV with ``format=csv``, or
        one phase's Parquet with ``format=parquet``; ``phase`` keeps one phase. 409 until
        the execution has finished; 422 for a phase it does not have, or Parquet without a
        phase when several have records (the message names them)."""
        execution = await owned(services, tenant, execution_id)
        if execution.status not in TERMINAL_STATUSES:
            raise Conflict(
                detail=f"execution {execution_id} is {execution.status}: its export is "
                "written when it finishes"
            )
        try:
            export = await open_export(services.ports.blobs, execution_id)
        except BlobNotFound:
            raise Conflict(detail=f"execution {execution_id} has no export yet") from None
        if format == "parquet":
            chosen = parquet_phase(export.manifest, phase)
            name = f'attachment; filename="{execution_id}-{chosen}.parquet"'
            headers = {"content-type": PARQUET, "content-disposition": name}
            return Stream(parquet_chunks(export, chosen), headers=headers)
        pick_phases(export.manifest, phase)  # 422 for a phase it does not have
        if format == "csv":
            # The header, not media_type: the route's media type would win over it.
            return Stream(csv_text(export, phase), headers={"content-type": CSV})
        return Stream(jsonl(export, phase), media_type="application/x-ndjson")

    @get("/outputs", raises=COMMON)
    async def get_outputs(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> list[OutputOut]:
        """The objects the execution wrote (part files, export files, summary) with sizes."""
        await owned(services, tenant, execution_id)
        outputs = await services.ports.state.outputs(execution_id)
        return [
            OutputOut(path=o.path, size_bytes=o.size_bytes, records=o.records, kind=o.kind)
            for o in outputs
        ]


async def jsonl(export: ExportAt, phase: str | None) -> AsyncIterator[bytes]:
    try:
        async for line in record_lines(export, phase):
            yield line + b"\n"
    except BlobNotFound:  # an export being rewritten: the body ends there
        return


async def csv_text(export: ExportAt, phase: str | None) -> AsyncIterator[str]:
    async for text, _rows in csv_chunks(lambda: record_lines(export, phase)):
        yield text
