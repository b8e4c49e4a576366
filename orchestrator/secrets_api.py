"""``/v1/secrets``: a tenant's secrets, what ``${secret:NAME}`` in its workflows resolves to.

A value goes in (``PUT /v1/secrets/{name}``) and never comes out: listing shows names and
when each was set, and no route returns a value. Workers read the values of the secrets an
execution's workflow names when they build its context; an execution whose workflow names a
secret the tenant lacks is refused at its start with a 400 naming the key and the secret
(``on_secrets_missing``). A tenant has at most ``Limits.max_secrets`` secrets of at most
``Limits.max_secret_bytes`` each (TRAWL_SECRETS_MAX_COUNT, TRAWL_SECRETS_MAX_VALUE_BYTES).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, RawBody

from orchestrator.errors import COMMON, Unprocessable
from orchestrator.services import ServicesDep, Tenant
from worker.secrets import SecretsMissing
from workflows.secrets import SECRET_NAME

NAME = re.compile(SECRET_NAME)


class SecretIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``PUT /v1/secrets/{name}``."""

    value: str


class SecretOut(msgspec.Struct, frozen=True, kw_only=True):
    """A secret as the API shows it: never its value."""

    name: str
    updated_at: datetime


_decode = msgspec.json.Decoder(SecretIn).decode


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValidationException(
            detail=f"{name!r} is not a secret name: 1-128 letters, digits and _, not "
            "starting with a digit"
        )
    return name


class SecretsController(Controller):
    path = "/v1/secrets"
    tags = ["secrets"]

    @put("/{name:str}", raises=[*COMMON, ValidationException, Unprocessable])
    async def put_secret(
        self, name: FromPath[str], services: ServicesDep, tenant: Tenant, body: RawBody
    ) -> SecretOut:
        """Create or replace the tenant's secret ``name`` with ``{"value": "..."}``. 400 for a
        bad name; 422 for a body that is not that, a value empty or too big, or when the
        tenant has its most secrets already."""
        _name(name)
        try:
            value = _decode(body).value
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            # msgspec's messages name the field and the type, never the value.
            raise Unprocessable(
                detail=f'invalid secret: {error}; expected {{"value": "..."}}'
            ) from None
        limits = services.limits
        size = len(value.encode("utf-8"))
        if not value:
            raise Unprocessable(detail=f"secret {name}: the value is empty")
        if size > limits.max_secret_bytes:
            raise Unprocessable(
                detail=f"secret {name}: the value has {size} bytes; this deployment allows "
                f"at most {limits.max_secret_bytes} (TRAWL_SECRETS_MAX_VALUE_BYTES)"
            )
        stored = await services.ports.state.put_secret(
            tenant, name, value, max_secrets=limits.max_secrets
        )
        if stored is None:
            raise Unprocessable(
                detail=f"this tenant has {limits.max_secrets} secrets, the most this "
                "deployment allows (TRAWL_SECRETS_MAX_COUNT); delete one first"
            )
        return SecretOut(name=stored.name, updated_at=stored.updated_at)

    @get("/", raises=COMMON)
    async def list_secrets(self, services: ServicesDep, tenant: Tenant) -> list[SecretOut]:
        """The tenant's secrets by name, with when each was last set; never a value."""
        found = await services.ports.state.list_secrets(tenant)
        return [SecretOut(name=s.name, updated_at=s.updated_at) for s in found]

    @delete("/{name:str}", raises=COMMON)
    async def delete_secret(
        self, name: FromPath[str], services: ServicesDep, tenant: Tenant
    ) -> None:
        """Delete the tenant's secret; 404 if it has none of that name. Executions already
        running keep the value they loaded; new ones naming it are refused."""
        if not await services.ports.state.delete_secret(tenant, name):
            raise NotFoundException(detail=f"no secret {name!r}")


def on_secrets_missing(request: Request[Any, Any, Any], exc: SecretsMissing) -> Response[Any]:
    """A start whose workflow names secrets the tenant lacks: 400, one problem per place,
    as ``trawl validate`` lists them."""
    problems = [{"path": p.path, "message": p.message} for p in exc.problems]
    body = {
        "status_code": 400,
        "detail": str(exc),
        "extra": {"error_class": exc.error_class, "problems": problems},
    }
    return Response(body, status_code=400)
