"""One output object of an execution, streamed: a part file while it runs, the export's
files once it has ended.

``GET /v1/executions/{id}/outputs`` lists what an execution wrote; this route reads one of
those objects by its path under the execution (``parts/product/part-w1-000003.jsonl``,
``export/summary.json``): the output's ``path`` without the leading ``<id>/``. Only a path
the outputs list names is served, never another object of the bucket, and another tenant's
execution is a 404 like everywhere else. Part files are written whole and registered after
(worker/sink.py), so a listed part is complete; a client follows a running crawl by
reading the parts it has not read yet (trawl/client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Stream

from backends.blobs import BlobNotFound, BlobStore
from orchestrator.errors import COMMON
from orchestrator.executions_api import owned
from orchestrator.services import ServicesDep, Tenant

# Whatever the object holds (JSON lines, JSON, Parquet): its path says which.
OCTETS = "application/octet-stream"


class ObjectsController(Controller):
    path = "/v1/executions/{execution_id:str}/objects"
    tags = ["exports"]

    @get("/{object_path:path}", raises=COMMON, media_type=OCTETS)
    async def get_object(
        self,
        execution_id: FromPath[str],
        object_path: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
    ) -> Stream:
        """One object ``GET .../outputs`` lists, by its path under the execution (the
        output's ``path`` without ``<id>/``), streamed as bytes (its path says what they
        are). 404 for a path the list does not name."""
        await owned(services, tenant, execution_id)
        relative = object_path.lstrip("/")
        full = f"{execution_id}/{relative}"
        listed = {o.path for o in await services.ports.state.outputs(execution_id)}
        blobs = services.ports.blobs
        if not relative or full not in listed or not await blobs.exists(full):
            raise NotFoundException(detail=f"execution {execution_id} has no output {relative!r}")
        return Stream(chunks(blobs, full), media_type=OCTETS)


async def chunks(blobs: BlobStore, path: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in blobs.iter_chunks(path):
            yield chunk
    except BlobNotFound:  # deleted between the check and the read: the body ends there
        return
