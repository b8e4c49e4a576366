"""What data consumers read: an execution's export, streamed, and its output objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from backends.blobs import BlobNotFound, BlobStore
from backends.state import TERMINAL_STATUSES
from orchestrator.errors import COMMON, Conflict
from orchestrator.executions_api import owned
from orchestrator.models import OutputOut
from orchestrator.services import ServicesDep, Tenant
from worker.export_read import csv_chunks, lines
from worker.paths import export_path

CSV_NOTE = "CSV: nested fields become dotted columns (data.specs.Volume), lists JSON text."


class ExportsController(Controller):
    path = "/v1/executions/{execution_id:str}"
    tags = ["exports"]

    @get("/records", raises=[*COMMON, Conflict], media_type="application/x-ndjson")
    async def get_records(
        self,
        execution_id: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
        format: Annotated[Literal["jsonl", "csv"], QueryParameter(description=CSV_NOTE)] = "jsonl",
    ) -> Stream:
        """The export (each record once), streamed: JSON lines, or CSV with ``format=csv``.
        409 until the execution has finished."""
        execution = await owned(services, tenant, execution_id)
        if execution.status not in TERMINAL_STATUSES:
            raise Conflict(
                detail=f"execution {execution_id} is {execution.status}: its export is "
                "written when it finishes"
            )
        blobs = services.ports.blobs
        path = export_path(execution_id)
        if not await blobs.exists(path):
            raise Conflict(detail=f"execution {execution_id} has no export yet")
        if format == "csv":
            return Stream(csv_text(blobs, path), media_type="text/csv; charset=utf-8")
        return Stream(jsonl(blobs, path), media_type="application/x-ndjson")

    @get("/outputs", raises=COMMON)
    async def get_outputs(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> list[OutputOut]:
        """The objects the execution wrote (part files, export, summary) with sizes."""
        await owned(services, tenant, execution_id)
        outputs = await services.ports.state.outputs(execution_id)
        return [
            OutputOut(path=o.path, size_bytes=o.size_bytes, records=o.records, kind=o.kind)
            for o in outputs
        ]


async def jsonl(blobs: BlobStore, path: str) -> AsyncIterator[bytes]:
    try:
        async for line in lines(blobs, path):
            yield line + b"\n"
    except BlobNotFound:
        return


async def csv_text(blobs: BlobStore, path: str) -> AsyncIterator[str]:
    async for text, _rows in csv_chunks(blobs, path):
        yield text
