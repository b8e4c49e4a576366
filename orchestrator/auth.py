"""API keys: ``trawl_`` plus 32 random bytes, shown once; only their SHA-256 is stored.

Every request but the health checks carries ``Authorization: Bearer <key>``; the key's
tenant scopes everything the request can see. A missing or unknown key is a 401, and so is
a revoked or an expired one (the detail says which). Another tenant's workflow or execution
is a 404, never a 403, so names do not leak across tenants. The one 403: a key that is not
an admin key asking to manage keys (orchestrator/keys_api.py).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from backends.ratelimit import RateLimiter
from backends.state import ApiKey, KeyStore
from orchestrator.quotas import Quotas, take_request_permit

PREFIX = "trawl_"
MAX_EXPIRES_IN_DAYS = 36_500  # a hundred years: beyond that, leave the expiry out

REFUSED = {
    "unknown": "unknown API key",
    "revoked": "API key revoked",
    "expired": "API key expired",
}


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def expiry_in(days: float | None, now: datetime) -> datetime | None:
    """When a key made now with a lifetime of ``days`` expires (None: never)."""
    if days is None:
        return None
    if not 0 < days <= MAX_EXPIRES_IN_DAYS:
        raise ValueError(f"the expiry must be more than 0 and at most {MAX_EXPIRES_IN_DAYS} days")
    return now + timedelta(days=days)


async def issue_key(
    state: KeyStore,
    tenant: str,
    *,
    admin: bool = False,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key for ``tenant`` and its record; the only time the key itself exists."""
    key = new_key()
    record = await state.create_api_key(hash_key(key), tenant, admin=admin, expires_at=expires_at)
    return key, record


async def create_key(state: KeyStore, tenant: str) -> str:
    """A new key for ``tenant`` that never expires; the only time the key itself exists."""
    key, _ = await issue_key(state, tenant)
    return key


async def key_of(
    request: Request[Any, Any, Any],
    state: KeyStore,
    limiter: RateLimiter | None = None,
    quotas: Quotas | None = None,
) -> ApiKey:
    """The request's bearer key; 401 without a usable one (saying whether it is unknown,
    revoked or expired), 429 when the key is over its request rate."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
    key_hash = hash_key(key.strip())
    check = await state.check_api_key(key_hash)
    if check.key is None:
        raise NotAuthorizedException(REFUSED[check.refused or "unknown"])
    if limiter is not None and quotas is not None:
        await take_request_permit(limiter, key_hash, quotas)
    return check.key


async def tenant_of(
    request: Request[Any, Any, Any],
    state: KeyStore,
    limiter: RateLimiter | None = None,
    quotas: Quotas | None = None,
) -> str:
    """The tenant of the request's bearer key (see ``key_of``)."""
    return (await key_of(request, state, limiter, quotas)).tenant
