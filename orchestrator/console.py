"""The operator console: one page listing the tenant's executions, with live progress from
the event stream, the funnel per phase and marker, and a stalled execution's likely cause.
The page is static; it asks for an API key and calls the same /v1 routes as any client (the
key stays in the browser tab)."""

from __future__ import annotations

from importlib import resources

from litestar import Response, get
from litestar.enums import MediaType

_PAGE = resources.files("orchestrator") / "static" / "console.html"


@get("/console", include_in_schema=False, media_type=MediaType.HTML)
async def console() -> Response[bytes]:
    """The console page."""
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; connect-src 'self'",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(_PAGE.read_bytes(), media_type=MediaType.HTML, headers=headers)
