"""API keys: ``trawl_`` plus 32 random bytes, shown once; only their SHA-256 is stored.

Every request but the health checks carries ``Authorization: Bearer <key>``; the key's
tenant scopes everything the request can see. A missing or unknown key is a 401; another
tenant's workflow or execution is a 404, never a 403, so names do not leak across tenants.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from backends.ratelimit import RateLimiter
from backends.state import StateStore
from orchestrator.quotas import Quotas, take_request_permit

PREFIX = "trawl_"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_key(state: StateStore, tenant: str) -> str:
    """A new key for ``tenant``; the only time the key itself exists."""
    key = new_key()
    await state.put_api_key(hash_key(key), tenant)
    return key


async def tenant_of(
    request: Request[Any, Any, Any],
    state: StateStore,
    limiter: RateLimiter | None = None,
    quotas: Quotas | None = None,
) -> str:
    """The tenant of the request's bearer key; 401 without a valid one, 429 when the key
    is over its request rate."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
    key_hash = hash_key(key.strip())
    tenant = await state.tenant_for_key(key_hash)
    if tenant is None:
        raise NotAuthorizedException("unknown API key")
    if limiter is not None and quotas is not None:
        await take_request_permit(limiter, key_hash, quotas)
    return tenant
