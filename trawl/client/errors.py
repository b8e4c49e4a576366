"""The API's errors as exceptions: one class per status docs/api.md documents.

Every error body is ``{"status_code", "detail", "extra"}``; ``raise_for`` turns a response
that is not a success into the class of its status, carrying the status, the detail, the
``extra`` as sent, the problems of a 422 (every one, with its path, as ``trawl validate``
prints them) and the ``Retry-After`` of a 429 or 503. A status the API does not document
(a proxy's 502, say) is an ``ApiError`` itself. Network failures are not API errors: they
stay httpx's (``httpx.TransportError``).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec


class Problem(msgspec.Struct, frozen=True):
    """One problem of an invalid workflow or override: ``path: message``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ApiError(Exception):
    """A response of the orchestrator that is not a success."""

    status: int = 0

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        extra: Any = None,
        problems: list[Problem] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        lines = [f"{status}: {detail}", *(f"  {p}" for p in problems or [])]
        super().__init__("\n".join(lines))
        self.status = status
        self.detail = detail
        self.extra = extra
        # Every problem of an invalid workflow, override or preview (422); empty otherwise.
        self.problems: list[Problem] = problems or []
        # How long the API asks to wait before trying again (429, 503), when it says.
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    """400: a body that does not fit the route's schema (an unknown field, a wrong type)."""

    status = 400


class Unauthorized(ApiError):
    """401: no key, or an unknown, revoked or expired one (the detail says which)."""

    status = 401


class Forbidden(ApiError):
    """403: an admin route with a key that is not an admin key."""

    status = 403


class NotFound(ApiError):
    """404: not found, or another tenant's (never told apart)."""

    status = 404


class Conflict(ApiError):
    """409: the name exists, the execution already ended, the export is not written yet."""

    status = 409


class TooLarge(ApiError):
    """413: a body over the orchestrator's ``TRAWL_MAX_REQUEST_BYTES``."""

    status = 413


class Unprocessable(ApiError):
    """422: an invalid workflow or override; ``problems`` lists every one with its path."""

    status = 422


class TooManyRequests(ApiError):
    """429: the key is over its request rate, a stream quota is used up, or the tenant has
    its cap of running executions; ``retry_after_s`` when a wait helps."""

    status = 429


class ServerError(ApiError):
    """500: an unexpected error; the orchestrator's log has the traceback."""

    status = 500


class Unavailable(ApiError):
    """503: a backend did not answer; retry later."""

    status = 503


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        Unprocessable,
        TooManyRequests,
        ServerError,
        Unavailable,
    )
}


class _Body(msgspec.Struct):
    detail: str = ""
    extra: Any = None


def error_of(status: int, body: bytes, headers: httpx.Headers) -> ApiError:
    """The exception for an error response: its class by status, its body decoded."""
    try:
        decoded = msgspec.json.decode(body, type=_Body)
        detail, extra = decoded.detail, decoded.extra
    except msgspec.DecodeError:  # not the API's body (a proxy's page): its text
        detail, extra = body.decode("utf-8", errors="replace").strip()[:500], None
    problems: list[Problem] = []
    if isinstance(extra, dict) and isinstance(extra.get("problems"), list):
        try:
            problems = msgspec.convert(extra["problems"], list[Problem])
        except msgspec.ValidationError:
            problems = []
    cls = BY_STATUS.get(status, ApiError)
    return cls(
        status,
        detail or httpx.codes.get_reason_phrase(status),
        extra=extra,
        problems=problems,
        retry_after_s=_retry_after(headers.get("retry-after")),
    )


async def raise_for(response: httpx.Response) -> None:
    """Raise the response's ``ApiError`` unless it is a success (its body is read first,
    which a streamed response needs)."""
    if response.is_success:
        return
    body = await response.aread()
    raise error_of(response.status_code, body, response.headers)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the API sends whole seconds; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
