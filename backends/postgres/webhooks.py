"""The webhook outbox's SQL (see ``StateStore.claim_webhooks`` and ``worker/webhooks.py``).

Each operation is one statement. A claim takes due rows with ``FOR UPDATE SKIP LOCKED``, so
workers claiming at once split the due rows between them instead of waiting on each other,
and moves their ``next_at`` a lease ahead in the same statement.
"""

from __future__ import annotations

from typing import Any

from backends.state import WebhookDelivery

COLUMNS = (
    "execution_id, tenant, url, payload, status, attempts, created_at, next_at, last_error,"
    " finished_at"
)

ENQUEUE = """
INSERT INTO webhooks (execution_id, tenant, url, payload, created_at, next_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (execution_id) DO NOTHING
RETURNING 1
"""

CLAIM = f"""
WITH due AS (
    SELECT execution_id FROM webhooks
    WHERE status = 'pending' AND next_at <= $1
    ORDER BY next_at, execution_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks w SET attempts = w.attempts + 1, next_at = $3
FROM due WHERE w.execution_id = due.execution_id
RETURNING {", ".join(f"w.{c.strip()}" for c in COLUMNS.split(","))}
"""

# $3: the new status; $4: when pending, the next attempt's time (else unchanged).
RECORD = """
UPDATE webhooks SET
    status = $3,
    next_at = coalesce($4, next_at),
    last_error = $5,
    finished_at = $6
WHERE execution_id = $1 AND attempts = $2 AND status = 'pending'
RETURNING 1
"""

GET = f"SELECT {COLUMNS} FROM webhooks WHERE execution_id = $1"


def delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(**dict(row))
