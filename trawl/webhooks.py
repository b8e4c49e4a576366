"""Receiving Trawl's webhooks: check a call's signature and read its payload.

A Trawl deployment POSTs a JSON payload to the URL a workflow or an execution names when
the execution ends (docs/webhooks.md). Verify each call with the tenant's signing secret
(``GET /v1/webhook-secret``, or ``trawl webhooks secret --tenant T`` for an operator)
before trusting it::

    from trawl.webhooks import InvalidSignature, verify

    try:
        event = verify(secret, request.headers, raw_body)  # the bytes as received
    except InvalidSignature:
        return 400
    # Trawl-Delivery (the execution id) is the same on every retry of one call.
    if already_seen(request.headers["Trawl-Delivery"]):
        return 200
    handle(event["event"], event["execution_id"], event["manifest_uri"])
    return 200  # any 2xx ends the retries

This module and what it imports use only the standard library.
"""

from __future__ import annotations

from worker.webhook_signing import (
    DEFAULT_TOLERANCE_S,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    sign,
    signature,
    tenant_secret,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "InvalidSignature",
    "sign",
    "signature",
    "tenant_secret",
    "verify",
]
