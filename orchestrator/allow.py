"""OPTIONS answers with every method of the path.

Litestar's automatic OPTIONS handler lists only the methods of one of the handlers that
share a path (``Allow: OPTIONS, POST`` for ``/v1/workflows``, which also has GET), which
disagrees with the OpenAPI schema. This middleware rewrites ``Allow`` from the app's routes.
"""

from __future__ import annotations

from typing import Any

from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def allow_header(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "OPTIONS":  # HTTP only: websocket scopes have no method
            await app(scope, receive, send)
            return
        allowed = _methods(scope)

        async def send_fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and allowed:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", allowed.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_fixed)

    return middleware


def _methods(scope: Scope) -> str:
    handler: Any = scope.get("route_handler")
    paths: set[str] = getattr(handler, "paths", set())
    litestar_app: Any = scope.get("litestar_app") or scope.get("app")
    methods: set[str] = set()
    for route in getattr(litestar_app, "routes", []):
        if isinstance(route, HTTPRoute) and route.path in paths:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))
