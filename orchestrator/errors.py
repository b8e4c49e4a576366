"""Errors as HTTP: one place maps what Trawl raises to a status and a JSON body.

Every error body has Litestar's shape, ``{"status_code", "detail", "extra"}``, so the
OpenAPI schema documents them all alike. An invalid workflow is a 422 whose ``extra``
lists every problem with its path, the lines ``trawl validate`` prints.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    TooManyRequestsException,
)
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from backends.errors import InvalidInputError, PermanentError, RetryableError, TrawlError
from workflows import WorkflowInvalid
from workflows.isolated import OffloadFailed

log = logging.getLogger("trawl.orchestrator")


class Conflict(ClientException):
    status_code = HTTP_409_CONFLICT


class Unprocessable(ClientException):
    status_code = HTTP_422_UNPROCESSABLE_ENTITY


class TooLarge(ClientException):
    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE


# What every authenticated endpoint can answer besides its own success (429: the key is
# over its request rate).
COMMON = [NotAuthorizedException, NotFoundException, TooManyRequestsException]


def invalid_workflow(error: WorkflowInvalid) -> Unprocessable:
    problems = [{"path": p.path, "message": p.message} for p in error.problems]
    return Unprocessable(detail=error.summary(), extra={"problems": problems})


def _body(status: int, detail: str, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return body


def on_workflow_invalid(request: Request[Any, Any, Any], exc: WorkflowInvalid) -> Response[Any]:
    error = invalid_workflow(exc)
    return Response(_body(error.status_code, error.detail, error.extra), status_code=422)


def on_trawl_error(request: Request[Any, Any, Any], exc: TrawlError) -> Response[Any]:
    if isinstance(exc, RetryableError):
        status = HTTP_503_SERVICE_UNAVAILABLE
    elif isinstance(exc, InvalidInputError | PermanentError):
        status = HTTP_422_UNPROCESSABLE_ENTITY
    else:
        status = HTTP_500_INTERNAL_SERVER_ERROR
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return Response(_body(status, str(exc), {"error_class": exc.error_class}), status_code=status)


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return Response(
        _body(exc.status_code, exc.detail, exc.extra),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Never a traceback to a client: log it, answer with what happened in one line."""
    log.exception("%s %s failed", request.method, request.url.path)
    detail = f"internal error ({type(exc).__name__}); the orchestrator's log has the details"
    return Response(_body(500, detail), status_code=500)


def on_offload_failed(request: Request[Any, Any, Any], exc: OffloadFailed) -> Response[Any]:
    """A workflow that could not be checked within its time or memory: the tenant's input
    is too costly, so a 422 saying which limit it hit."""
    detail = f"the workflow could not be checked: {exc}"
    return Response(_body(422, detail, {"error_class": "workflow_too_costly"}), status_code=422)


HANDLERS: dict[int | type[Exception], Any] = {
    WorkflowInvalid: on_workflow_invalid,
    OffloadFailed: on_offload_failed,
    TrawlError: on_trawl_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
