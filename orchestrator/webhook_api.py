"""Webhooks through the API: the tenant's signing secret, an execution's call, and the check
a start's webhook URL gets.

A tenant verifies the calls it receives with its own secret, ``GET /v1/webhook-secret``:
derived from the deployment's secret (``TRAWL_WEBHOOK_SECRET``) and the tenant's name, so
nothing is stored and no tenant's secret tells anything of another's. Without a deployment
secret this route is a 404 and a start that names a webhook is a 422 naming the setting.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from backends.errors import TrawlError
from orchestrator.errors import COMMON, Unprocessable
from orchestrator.services import Services, ServicesDep, Tenant
from worker.webhook_signing import SECRET_SETTING, SIGNATURE_HEADER, tenant_secret
from workflows import Problem, WorkflowInvalid
from workflows.checks import start_url_error
from workflows.spec import Workflow

NOT_ENABLED = f"this deployment sends no webhooks: {SECRET_SETTING} is not set"


class WebhookSecretOut(msgspec.Struct, frozen=True, kw_only=True):
    """The secret the tenant's webhook calls are signed with (see docs/webhooks.md)."""

    tenant: str
    secret: str
    header: str = SIGNATURE_HEADER


class WebhookOut(msgspec.Struct, frozen=True, kw_only=True):
    """An execution's webhook call: pending (``next_at``: its next attempt), delivered, or
    failed (``last_error`` says why)."""

    url: str
    status: str
    attempts: int
    created_at: datetime
    next_at: datetime | None
    last_error: str | None
    finished_at: datetime | None


async def check_webhook(services: Services, workflow: Workflow, requested: str | None) -> None:
    """Refuse (422) a start whose webhook URL, its own or else its workflow's, cannot be
    called: the deployment has no webhook secret, it is not an absolute http(s) URL, or the
    SSRF guard refuses its host. Nothing when neither names one."""
    if requested is not None:
        url, path = requested, "webhook"
    elif workflow.webhook is not None:
        url, path = workflow.webhook.url, "webhook.url"
    else:
        return
    if not services.webhook_secret:
        raise Unprocessable(detail=f"{path}: {NOT_ENABLED}")
    problem = start_url_error(url)
    if problem is None:
        try:
            await services.guard.check_url(url)
        except (TrawlError, ValueError) as exc:  # ValueError: a name IDNA cannot encode
            problem = str(exc)
    if problem is not None:
        raise WorkflowInvalid([Problem(path, problem)])


class WebhookController(Controller):
    path = "/v1"
    tags = ["webhooks"]

    @get("/webhook-secret", raises=COMMON)
    async def webhook_secret(self, services: ServicesDep, tenant: Tenant) -> WebhookSecretOut:
        """The secret this tenant's webhook calls are signed with; 404 when the deployment
        sends no webhooks."""
        if not services.webhook_secret:
            raise NotFoundException(detail=NOT_ENABLED)
        return WebhookSecretOut(
            tenant=tenant, secret=tenant_secret(services.webhook_secret, tenant)
        )

    @get("/executions/{execution_id:str}/webhook", raises=COMMON)
    async def execution_webhook(
        self, execution_id: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> WebhookOut:
        """The execution's webhook call and how it went; 404 while it owes none (it has not
        ended, or names no webhook)."""
        state = services.ports.state
        execution = await state.get_execution(execution_id)
        if execution is None or execution.tenant != tenant:
            raise NotFoundException(detail=f"no execution {execution_id!r}")
        call = await state.get_webhook(execution_id)
        if call is None:
            raise NotFoundException(detail=f"execution {execution_id} owes no webhook call")
        return WebhookOut(
            url=call.url,
            status=call.status,
            attempts=call.attempts,
            created_at=call.created_at,
            next_at=call.next_at if call.status == "pending" else None,
            last_error=call.last_error,
            finished_at=call.finished_at,
        )
