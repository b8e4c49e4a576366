"""The distributed-mode StateStore: Postgres, reached through PgBouncer in transaction
pooling mode, with versioned migrations (``migrate``, what ``trawl migrate`` runs)."""

from backends.postgres.migrate import migrate
from backends.postgres.pool import PostgresPool
from backends.postgres.state import PostgresStateStore

__all__ = ["PostgresPool", "PostgresStateStore", "migrate"]
