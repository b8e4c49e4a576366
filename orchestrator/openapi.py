"""What the generated OpenAPI document cannot say by itself: request bodies with unknown
fields are refused, and which response's values feed which operation (OpenAPI links, which
clients and schemathesis's stateful tests follow)."""

from __future__ import annotations

from litestar.openapi.spec import (
    Link,
    OpenAPI,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    RequestBody,
    Schema,
)

from orchestrator.models import OVERRIDE_PATTERN, URL_PATTERN
from workflows.secrets import SECRET_NAME
from workflows.spec import PhaseName

# (path, method, status) -> {link name: (target path, target method, {param: expression})}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/v1/workflows", "post", "201"): {
        "GetWorkflow": ("/v1/workflows/{name}", "get", {"name": "$response.body#/name"}),
        "UpdateWorkflow": ("/v1/workflows/{name}", "put", {"name": "$response.body#/name"}),
        "DeleteWorkflow": ("/v1/workflows/{name}", "delete", {"name": "$response.body#/name"}),
        "StartExecution": (
            "/v1/workflows/{name}/executions",
            "post",
            {"name": "$response.body#/name"},
        ),
        "ListExecutions": (
            "/v1/workflows/{name}/executions",
            "get",
            {"name": "$response.body#/name"},
        ),
    },
    # Not to the event stream: it lasts as long as the execution runs.
    ("/v1/workflows/{name}/executions", "post", "202"): {
        name: (path, method, {"execution_id": "$response.body#/id"})
        for name, path, method in (
            ("GetExecution", "/v1/executions/{execution_id}", "get"),
            ("CancelExecution", "/v1/executions/{execution_id}/cancel", "post"),
            ("GetRecords", "/v1/executions/{execution_id}/records", "get"),
            ("GetOutputs", "/v1/executions/{execution_id}/outputs", "get"),
        )
    },
}

STRICT_BODIES = ("StartRequest", "PreviewRequest")
# Bodies a route takes but does not need (Litestar marks every body required).
OPTIONAL_BODIES = (("/v1/workflows/{name}/executions", "post"),)


def refine(schema: OpenAPI) -> None:
    """Edit the generated document in place (Litestar serves this instance)."""
    schemas = schema.components.schemas or {}
    for name in STRICT_BODIES:
        if name in schemas:
            schemas[name].additional_properties = False
    _constrain_nested(schemas)
    paths = schema.paths or {}
    _constrain_path_parameters(paths)
    for path, method in OPTIONAL_BODIES:
        body = _operation(paths, path, method).request_body
        if isinstance(body, RequestBody):
            body.required = False
    for (path, method, status), links in LINKS.items():
        response = _operation(paths, path, method).responses or {}
        target = response.get(status)
        if not isinstance(target, OpenAPIResponse):
            continue
        target.links = {
            name: Link(
                operation_id=_operation(paths, to_path, to_method).operation_id,
                parameters=dict(parameters),
            )
            for name, (to_path, to_method, parameters) in links.items()
        }


# Path parameters the handlers check themselves (with a message naming the rule); the
# document states the rule too, so a client that follows it is never refused.
PATH_PATTERNS = {("/v1/secrets/{name}", "name"): f"^{SECRET_NAME}$"}


def _constrain_path_parameters(paths: dict[str, PathItem]) -> None:
    for (path, name), pattern in PATH_PATTERNS.items():
        item = paths.get(path)
        if item is None:
            continue
        for method in ("get", "put", "patch", "post", "delete"):
            operation = getattr(item, method)
            for parameter in (operation.parameters or []) if operation is not None else []:
                if getattr(parameter, "name", None) == name and isinstance(
                    parameter.schema, Schema
                ):
                    parameter.schema.pattern = pattern


def _operation(paths: dict[str, PathItem], path: str, method: str) -> Operation:
    operation = getattr(paths[path], method)
    assert isinstance(operation, Operation), f"no {method} {path}"
    return operation


def _pattern(annotated: object) -> str:
    """The regex of an ``Annotated[str, Meta(pattern=...)]`` type."""
    metadata: tuple[object, ...] = getattr(annotated, "__metadata__", ())
    pattern = getattr(metadata[0], "pattern", None)
    assert isinstance(pattern, str)
    return pattern


def _constrain_nested(schemas: dict[str, Schema]) -> None:
    """Litestar drops constraints inside list items and unions; the handlers (msgspec)
    enforce them, so the document states them too: a client or fuzzer that follows the
    schema is never refused for a request's shape."""
    start = schemas.get("StartRequest")
    if start is not None and start.properties:
        items = start.properties["set"]
        assert isinstance(items, Schema) and isinstance(items.items, Schema)
        items.items.pattern = OVERRIDE_PATTERN
    preview = schemas.get("PreviewRequest")
    if preview is not None and preview.properties:
        url = preview.properties["url"]
        assert isinstance(url, Schema)
        url.pattern = URL_PATTERN
        preview.properties["phase"] = Schema(
            one_of=[
                Schema(type=OpenAPIType.STRING, pattern=_pattern(PhaseName)),
                Schema(type=OpenAPIType.NULL),
            ]
        )
        preview.properties["workflow"] = Schema(
            description="The workflow document: a JSON object, or its YAML/JSON text.",
            one_of=[
                Schema(type=OpenAPIType.OBJECT, additional_properties=Schema()),
                Schema(type=OpenAPIType.STRING, min_length=1),
            ],
        )
