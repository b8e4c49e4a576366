"""The orchestrator: Trawl's HTTP API (Litestar). ``create_app`` builds it over the ports."""

from orchestrator.app import create_app
from orchestrator.services import Services

__all__ = ["Services", "create_app"]
