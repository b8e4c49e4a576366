"""The orchestrator: Trawl's HTTP API (Litestar). ``create_app`` builds it over the ports.

Both names are imported on first use, so a light module of this package (``orchestrator.wire``,
the bodies the Python client decodes) can be imported without Litestar or the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.app import create_app
    from orchestrator.services import Services

__all__ = ["Services", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from orchestrator.app import create_app

        return create_app
    if name == "Services":
        from orchestrator.services import Services

        return Services
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
