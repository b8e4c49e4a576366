"""The Litestar application: routes, dependencies, error handlers, OpenAPI at ``/schema``."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from orchestrator.allow import allow_header
from orchestrator.auth import tenant_of
from orchestrator.console import console
from orchestrator.errors import HANDLERS
from orchestrator.executions_api import (
    ExecutionListController,
    ExecutionsController,
    StartController,
)
from orchestrator.exports_api import ExportsController
from orchestrator.health_api import healthz, readyz
from orchestrator.keys_api import KeysController
from orchestrator.metrics import metrics_lifespan
from orchestrator.objects_api import ObjectsController
from orchestrator.openapi import refine
from orchestrator.preview_api import PreviewController
from orchestrator.retention import retention_lifespan
from orchestrator.scheduler import scheduler_lifespan
from orchestrator.schedules_api import SchedulesController, refine_schedules
from orchestrator.secrets_api import SecretsController, on_secrets_missing
from orchestrator.services import Services
from orchestrator.webhook_api import WebhookController
from orchestrator.workflows_api import WorkflowsController
from worker.secrets import SecretsMissing
from workflows.version import __version__

SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]
AUTHENTICATED = (
    WorkflowsController,
    StartController,
    ExecutionListController,
    ExecutionsController,
    ExportsController,
    ObjectsController,
    PreviewController,
    KeysController,
    WebhookController,
    SchedulesController,
    SecretsController,
)


def create_app(services: Services) -> Litestar:
    """The API over ``services``; the caller owns their lifecycle."""

    async def tenant(request: Request[Any, Any, Any]) -> str:
        return await tenant_of(
            request, services.ports.state, services.ports.limiter, services.limits.quotas
        )

    def provide_services() -> Services:
        return services

    # Every /v1 route takes a key; health, readiness and the console page do not.
    v1 = Router(path="/", route_handlers=list(AUTHENTICATED), security=SECURITY)
    app = Litestar(
        middleware=[allow_header],
        route_handlers=[v1, healthz, readyz, console],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "tenant": Provide(tenant),
        },
        exception_handlers={**HANDLERS, SecretsMissing: on_secrets_missing},
        lifespan=[
            scheduler_lifespan(services),
            retention_lifespan(services),
            metrics_lifespan(services),
        ],
        request_max_body_size=services.limits.max_request_bytes,
        openapi_config=OpenAPIConfig(
            title="Trawl orchestrator",
            version=__version__,
            description="Workflows, executions, exports and preview. Every /v1 route takes "
            "`Authorization: Bearer <key>` (`trawl keys create --tenant NAME`).",
            path="/schema",
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http", scheme="bearer", description="A Trawl API key"
                    )
                }
            ),
        ),
    )
    refine(app.openapi_schema)
    refine_schedules(app.openapi_schema)
    return app
