"""``/v1/admin/keys``: list, create and revoke API keys, for admin keys only.

An admin key (``trawl keys create --admin``) manages every tenant's keys here, and acts for
its own tenant on the other routes. Any other key gets a 403 on these routes, the only 403
the API answers. A created key is shown once; a listed one shows its public id only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, PermissionDeniedException, ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, QueryParameter, RawBody

from backends.state import ApiKey
from orchestrator.auth import MAX_EXPIRES_IN_DAYS, expiry_in, issue_key, key_of
from orchestrator.errors import COMMON
from orchestrator.models import TENANT_PATTERN, KeyCreated, KeyCreateRequest, KeyOut
from orchestrator.services import ServicesDep

ADMIN_ONLY = "this route needs an admin API key (trawl keys create --admin)"


async def admin_key(request: Request[Any, Any, Any], services: ServicesDep) -> ApiKey:
    """The request's key if it is an admin key: 401 without a usable key, 403 for another."""
    key = await key_of(
        request, services.ports.state, services.ports.limiter, services.limits.quotas
    )
    if not key.admin:
        raise PermissionDeniedException(ADMIN_ONLY)
    return key


AdminKey = NamedDependency[ApiKey]


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        tenant=key.tenant,
        admin=key.admin,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


def parse_key_request(body: bytes) -> KeyCreateRequest:
    """The request body, or a 400 naming the field. Read here rather than by Litestar, whose
    validation takes a body field named ``tenant`` for the ``tenant`` dependency and
    answers a 500."""
    try:
        return _decode_request(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ValidationException(detail=f"invalid key request: {error}") from None


_decode_request = msgspec.json.Decoder(KeyCreateRequest).decode


@dataclass
class KeyBodyOperation(Operation):
    """Documents the body ``create_key`` reads itself (``KeyCreateRequest``)."""

    def __post_init__(self) -> None:
        schema = Schema(
            type=OpenAPIType.OBJECT,
            required=["tenant"],
            additional_properties=False,
            properties={
                "tenant": Schema(
                    type=OpenAPIType.STRING, min_length=1, max_length=200, pattern=TENANT_PATTERN
                ),
                "expires_in_days": Schema(
                    one_of=[
                        Schema(
                            type=OpenAPIType.NUMBER,
                            exclusive_minimum=0,
                            maximum=MAX_EXPIRES_IN_DAYS,
                        ),
                        Schema(type=OpenAPIType.NULL),
                    ]
                ),
                "admin": Schema(type=OpenAPIType.BOOLEAN, default=False),
            },
        )
        self.request_body = RequestBody(
            required=True,
            description="The tenant of the new key; expires_in_days: its lifetime (none: "
            "it never expires); admin: whether it may manage keys too.",
            content={"application/json": OpenAPIMediaType(schema=schema)},
        )


class KeysController(Controller):
    path = "/v1/admin/keys"
    tags = ["admin"]
    dependencies = {"admin": Provide(admin_key)}

    @get("/", raises=[*COMMON, PermissionDeniedException])
    async def list_keys(
        self,
        services: ServicesDep,
        admin: AdminKey,
        of_tenant: Annotated[
            str | None,
            QueryParameter(name="tenant", min_length=1, max_length=200, required=False),
        ] = None,
    ) -> list[KeyOut]:
        """Every key (or one tenant's), revoked and expired ones too, oldest first; ids,
        never the keys. 403 for a key that is not an admin key."""
        return [key_out(k) for k in await services.ports.state.list_api_keys(of_tenant)]

    @post(
        "/",
        status_code=201,
        raises=[*COMMON, PermissionDeniedException, ValidationException],
        operation_class=KeyBodyOperation,
    )
    async def create_key(self, services: ServicesDep, admin: AdminKey, body: RawBody) -> KeyCreated:
        """A new key for a tenant, shown this once. 403 for a key that is not an admin
        key."""
        data = parse_key_request(body)
        expires_at = expiry_in(data.expires_in_days, services.clock.wall())
        key, record = await issue_key(
            services.ports.state, data.tenant, admin=data.admin, expires_at=expires_at
        )
        return KeyCreated(
            key=key,
            id=record.id,
            tenant=record.tenant,
            admin=record.admin,
            created_at=record.created_at,
            expires_at=record.expires_at,
        )

    @delete("/{key_id:str}", raises=[*COMMON, PermissionDeniedException])
    async def revoke_key(
        self, key_id: FromPath[str], services: ServicesDep, admin: AdminKey
    ) -> None:
        """Revoke a key at once: its next request is a 401 "API key revoked". 404 for an
        unknown id; 403 for a key that is not an admin key."""
        if await services.ports.state.revoke_api_key(key_id) is None:
            raise NotFoundException(detail=f"no API key {key_id!r}")
