"""``/v1/workflows``: put, list, read and delete a tenant's workflows.

A body is a workflow document in YAML (``application/yaml``) or JSON. Each put makes a new
version; executions keep the version they started with. Validation is ``trawl validate``'s:
a 422 lists every problem with its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, QueryParameter, RawBody

from backends.state import StoredWorkflow
from orchestrator.admission import admit_body
from orchestrator.errors import COMMON, Conflict, TooLarge, Unprocessable
from orchestrator.models import WorkflowOut, WorkflowSummary
from orchestrator.services import Services, ServicesDep, Tenant
from workflows import Format, Workflow, workflow_json_schema

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

WORKFLOW_DOC = (
    "A workflow document (docs/workflows.md) as YAML or JSON; the Content-Type says which "
    "(application/yaml or application/json). Either way the document is a mapping; "
    "`trawl schema` prints its full JSON Schema."
)


EXAMPLE: dict[str, Any] = {
    "name": "example-shop",
    "start_urls": ["https://shop.example/"],
    "max_depth": 3,
    "phases": [
        {
            "name": "page",
            "nodes": [
                {"type": "extract", "fields": {"title": "h1"}},
                {"type": "extract_links", "limit": 50},
            ],
        }
    ],
}


@dataclass
class WorkflowBodyOperation(Operation):
    """The handler reads the raw body (YAML or JSON) itself; this documents it."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=WORKFLOW_DOC,
            content={
                # YAML text whose document is a workflow mapping: described as the mapping
                # (clients and fuzzers serialise it to YAML), not as "any string".
                "application/yaml": OpenAPIMediaType(schema=document_schema(), example=EXAMPLE),
                "application/json": OpenAPIMediaType(schema=document_schema(), example=EXAMPLE),
            },
        )


def document_schema() -> Schema:
    """The outline every workflow document has; `trawl schema` has the rest."""
    spec = workflow_json_schema()["$defs"]["Workflow"]
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["name", "start_urls", "phases"],
        properties={
            "name": Schema(type=OpenAPIType.STRING, pattern=spec["properties"]["name"]["pattern"]),
            "start_urls": Schema(
                type=OpenAPIType.ARRAY,
                items=Schema(type=OpenAPIType.STRING, min_length=1),
                min_items=1,
            ),
            "phases": Schema(
                type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT), min_items=1
            ),
        },
    )


def body_format(request: Request[Any, Any, Any]) -> Format:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return "yaml" if content_type in YAML_TYPES else "json"


async def parse_workflow(services: Services, tenant: str, data: bytes, fmt: Format) -> Workflow:
    """The validated workflow within the deployment's ceilings; ``WorkflowInvalid`` (a 422)
    lists every problem."""
    return await admit_body(services, tenant, data, fmt)


def summary(stored: StoredWorkflow) -> WorkflowSummary:
    return WorkflowSummary(name=stored.name, version=stored.version, created_at=stored.created_at)


def full(stored: StoredWorkflow) -> WorkflowOut:
    return WorkflowOut(
        name=stored.name,
        version=stored.version,
        created_at=stored.created_at,
        source=stored.source_text,
        spec=msgspec.json.decode(stored.spec_json),
    )


async def store(
    services: ServicesDep, tenant: Tenant, workflow: Workflow, data: bytes
) -> WorkflowOut:
    spec_json = msgspec.json.encode(workflow).decode()
    source = data.decode("utf-8", errors="replace")
    state = services.ports.state
    version = await state.put_workflow(tenant, workflow.name, source, spec_json)
    stored = await state.get_workflow(tenant, workflow.name, version)
    assert stored is not None
    return full(stored)


class WorkflowsController(Controller):
    path = "/v1/workflows"
    tags = ["workflows"]

    @post(
        "/",
        status_code=201,
        raises=[*COMMON, Conflict, TooLarge, Unprocessable],
        operation_class=WorkflowBodyOperation,
    )
    async def create_workflow(
        self,
        request: Request[Any, Any, Any],
        body: RawBody,
        services: ServicesDep,
        tenant: Tenant,
    ) -> WorkflowOut:
        """Store a new workflow (version 1). 409 if the name exists: PUT makes a new version."""
        workflow = await parse_workflow(services, tenant, body, body_format(request))
        if await services.ports.state.get_workflow(tenant, workflow.name) is not None:
            raise Conflict(
                detail=f"workflow {workflow.name!r} exists; PUT /v1/workflows/{workflow.name} "
                "stores a new version of it"
            )
        return await store(services, tenant, workflow, body)

    @get("/", raises=COMMON)
    async def list_workflows(self, services: ServicesDep, tenant: Tenant) -> list[WorkflowSummary]:
        """The latest version of each of the tenant's workflows."""
        return [summary(w) for w in await services.ports.state.list_workflows(tenant)]

    @get("/{name:str}", raises=COMMON)
    async def get_workflow(
        self,
        name: FromPath[str],
        services: ServicesDep,
        tenant: Tenant,
        version: Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1)] = None,
    ) -> WorkflowOut:
        """One version of a workflow (default: the latest): its source and its spec."""
        stored = await services.ports.state.get_workflow(tenant, name, version)
        if stored is None:
            raise not_found(name, version)
        return full(stored)

    @put(
        "/{name:str}",
        raises=[*COMMON, TooLarge, Unprocessable],
        operation_class=WorkflowBodyOperation,
    )
    async def update_workflow(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        body: RawBody,
        services: ServicesDep,
        tenant: Tenant,
    ) -> WorkflowOut:
        """Store a new version; running executions keep the version they started with."""
        if await services.ports.state.get_workflow(tenant, name) is None:
            raise not_found(name)
        workflow = await parse_workflow(services, tenant, body, body_format(request))
        if workflow.name != name:
            raise Unprocessable(
                detail="1 problem",
                extra={
                    "problems": [
                        {
                            "path": "name",
                            "message": f"is {workflow.name!r} but the URL names {name!r}",
                        }
                    ]
                },
            )
        return await store(services, tenant, workflow, body)

    @delete("/{name:str}", raises=[*COMMON, Conflict])
    async def delete_workflow(
        self, name: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> None:
        """Delete every version. 409 while an execution of it is pending or running."""
        state = services.ports.state
        if await state.get_workflow(tenant, name) is None:
            raise not_found(name)
        active = [
            e.id
            for e in await state.list_executions(tenant, workflow=name, limit=1000)
            if e.status in ("pending", "running")
        ]
        if active:
            raise Conflict(
                detail=f"workflow {name!r} has {len(active)} running execution(s); cancel "
                f"them first (POST /v1/executions/{active[0]}/cancel)"
            )
        await state.delete_workflow(tenant, name)


def not_found(name: str, version: int | None = None) -> NotFoundException:
    what = f"workflow {name!r}" + (f" version {version}" if version is not None else "")
    return NotFoundException(detail=f"no {what}")
