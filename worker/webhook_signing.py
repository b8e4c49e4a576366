"""How webhook calls are signed, and how a receiver checks them (standard library only).

The scheme is Stripe's. Each tenant has a signing secret of its own, derived from the
deployment's secret (``TRAWL_WEBHOOK_SECRET``), so one tenant's secret says nothing about
another's and none has to be stored: ``tenant_secret(deployment_secret, tenant)``. A call
carries ``Trawl-Signature: t=<unix seconds>,v1=<hex>``, where the hex is HMAC-SHA256, keyed
by the tenant's secret, over ``<t>.`` followed by the body's bytes. Signing the time with
the body lets a receiver refuse an old call replayed (``verify``'s ``tolerance_s``).

This module imports nothing but the standard library, so a receiver can use it
(``trawl.webhooks`` re-exports it) without the crawler's dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_SETTING = "TRAWL_WEBHOOK_SECRET"
SIGNATURE_HEADER = "Trawl-Signature"
DELIVERY_HEADER = "Trawl-Delivery"  # the execution id: one delivery per execution
EVENT_HEADER = "Trawl-Event"  # execution.completed, execution.cancelled, execution.failed
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0
_SCHEME = "v1"


class InvalidSignature(ValueError):
    """A call whose signature is missing, malformed, wrong or too old; the message says
    which (never the secret)."""


def tenant_secret(deployment_secret: str, tenant: str) -> str:
    """The secret ``tenant``'s webhook calls are signed with: ``whsec_`` and 64 hex digits,
    HMAC-SHA256 of the tenant's name keyed by the deployment's secret."""
    if not deployment_secret:
        raise ValueError(f"{SECRET_SETTING} is not set")
    digest = hmac.new(
        deployment_secret.encode(), b"trawl-webhook:" + tenant.encode(), hashlib.sha256
    )
    return SECRET_PREFIX + digest.hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature (hex) of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Trawl-Signature`` header value for ``body`` sent now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{_SCHEME}={signature(secret, t, body)}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a call's ``Trawl-Signature`` (looked up in ``headers`` whatever its case)
    against the raw ``body`` and return the decoded payload. InvalidSignature when the
    header is missing or malformed, no ``v1`` signature matches, or the call was signed
    more than ``tolerance_s`` seconds from ``now`` (0: any age). Pass the body exactly as
    received: re-encoded JSON does not verify."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp, candidates = _parse(header)
    if tolerance_s > 0:
        age = (time.time() if now is None else now) - timestamp
        if abs(age) > tolerance_s:
            when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s ahead"
            raise InvalidSignature(f"signed {when}, beyond the tolerance of {tolerance_s:g} s")
    expected = signature(secret, timestamp, raw)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("no signature matches the body and the secret")
    try:
        payload: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise InvalidSignature(f"the signed body is not JSON: {exc}") from None
    return payload


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():
        if key.lower() == lowered:
            return found
    return None


def _parse(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a header (several during a rotation)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature(f"{SIGNATURE_HEADER}: t is not a number") from None
        elif key == _SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"{SIGNATURE_HEADER} must be t=<unix time>,{_SCHEME}=<hex>")
    return timestamp, candidates
