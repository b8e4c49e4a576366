"""Settings from the environment (and a .env file if present), the same names everywhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec
from dotenv import dotenv_values

from backends.ratelimit import RatePolicy
from workflows.ceilings import Ceilings

if TYPE_CHECKING:
    from worker.autoscale import Concurrency

# backends/postgres/counters.py's MAX_COUNTER_SHARDS (checked by tests/unit/
# test_counter_settings.py), not imported: it would load the Postgres driver for every command.
MAX_COUNTER_SHARDS = 64


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting, read from ``TRAWL_<NAME>`` (``PORT`` for ``port``)."""

    database_url: str = "postgresql://postgres@127.0.0.1:6432/trawl"
    database_pool_size: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "trawl"
    seen_ttl_s: int = 7 * 24 * 3600  # how long an execution's seen-set outlives its last add
    pubsub_project: str = "trawl-local"
    pubsub_topic: str = "trawl-tasks"
    pubsub_subscription: str = "trawl-workers"
    pubsub_dead_letter_topic: str = "trawl-tasks-dead"
    pubsub_ack_deadline_s: int = 60
    pubsub_retention_s: int = 7 * 24 * 3600
    pubsub_max_delivery_attempts: int = 20
    gcs_bucket: str = "trawl-outputs"
    gcs_prefix: str = ""
    gcs_create_bucket: bool = False  # emulators and compose; production buckets pre-exist
    # Tasks in flight per process: the ceiling autoscaling stays under, or the fixed level
    # with TRAWL_WORKER_AUTOSCALE=0 (docs/operations.md, "Concurrency").
    worker_concurrency: int = 32
    worker_autoscale: bool = True
    # Of those, pages the browser engine renders at once (tabs) at most, when autoscaled.
    worker_browser_concurrency: int = 32
    # The memory the process and its browsers may use before the autoscaler lowers the
    # concurrency, in MiB; 0: the container's limit, else 70% of what was available at start.
    autoscale_memory_mb: int = 0
    worker_id: str | None = None  # default: hostname-pid
    shutdown_grace_s: float = 8.0  # Cloud Run allows 10 s after SIGTERM
    backend_outage_s: float = 300.0  # how long a backend may be down before a worker gives up
    chromium_path: str | None = None
    allow_private_networks: bool = False  # deprecated: RFC 1918 + loopback; see allow_networks
    allow_networks: str = ""  # networks and hosts crawls may reach: "10.0.0.0/8,intranet.example"
    log_format: str = "json"  # json | text
    # Query parameters whose values logs and traces mask (comma-separated globs, e.g.
    # "token,*_key"); empty: a built-in list of token, key, password and signature names.
    redact_query_params: str = ""
    health_host: str = "127.0.0.1"  # 0.0.0.0 in containers
    port: int = 8080
    api_host: str = "127.0.0.1"  # the orchestrator's bind address; 0.0.0.0 in containers
    max_request_bytes: int = 1024 * 1024  # a workflow body or preview request, at most
    max_running_executions: int = 10  # per tenant: pending or running at once
    # Quotas of the API (docs/tenants.md): requests per key, previews and event streams per
    # tenant.
    api_requests_per_s: float = 20.0
    api_burst: int = 40
    previews_per_s: float = 1.0
    preview_burst: int = 5
    previews_at_once: int = 2
    streams_at_once: int = 10
    admissions_at_once: int = 1  # workflow checks (parse, validate) per tenant at once
    reconcile_after_s: float = 300.0  # no progress this long: re-publish lost tasks
    stall_after_s: float = 180.0  # no task finished this long: the execution shows as stalled
    # The backlog metrics (docs/operations.md, "Autoscaling"): how often the orchestrator
    # that holds the metrics claim reads the queued and held tasks and the stalled executions
    # for OpenTelemetry (0: never; they are read only while an OTLP endpoint is configured).
    metrics_interval_s: float = 15.0

    # What any one workflow may ask for on this deployment (workflows/ceilings.py); the
    # orchestrator refuses more with a 422. `trawl run` ignores them.
    ceiling_max_body_bytes: int = 20 * 1024 * 1024
    ceiling_max_fetch_timeout_s: float = 120.0
    ceiling_max_script_timeout_s: float = 30.0
    ceiling_max_requests_per_second: float = 100.0
    ceiling_max_burst: int = 100
    ceiling_max_concurrency_per_host: int = 32
    ceiling_max_pages: int = 1_000_000
    ceiling_max_depth: int = 50
    ceiling_max_attempts: int = 10
    ceiling_max_backoff_s: float = 300.0
    ceiling_max_items: int = 1000

    # Per host across every execution and tenant of the deployment, enforced in Redis by
    # the workers: requests per second (0: no ceiling) and requests in flight.
    host_max_rps: float = 0.0
    host_max_concurrency: int = 64
    # Fair sharing of the workers: tasks of one execution in the shared queue at once (the
    # rest wait in Postgres until finishes make room); 0 turns the window off. Fixed per
    # execution when it starts.
    queue_window: int = 1000
    # The shard rows each execution's task counters are spread over in Postgres, so that
    # workers finishing tasks of one execution do not wait for each other (each process
    # writes one, picked at random; docs/distributed.md, "Counters"). 1: the execution's
    # single row, locked by every write, as versions before migration 0011 keep it; run
    # that while workers of such a version are about (docs/operations.md). At most 64.
    counter_shards: int = 16
    # Webhooks (docs/webhooks.md): the deployment's secret, from which each tenant's signing
    # secret is derived (unset: the orchestrator refuses webhooks), and how many attempts a
    # call gets (waiting 1 s, 2 s, 4 s... between them) before it has failed.
    webhook_secret: str = ""
    webhook_max_attempts: int = 8
    # Exports (docs/exports.md): a dataset file is finished once its JSON lines reach this
    # many bytes, uncompressed (its Parquet and gzip, a tenth of that, are in memory while
    # it is written); and whether gzipped CSV is written beside JSON lines and Parquet. The
    # export reads them from the environment (worker/export/build.py, ExportOptions).
    export_file_bytes: int = 64 * 1024 * 1024
    export_csv: bool = False
    # Tenants' secrets (docs/sessions.md): the key they and login sessions are encrypted
    # with in Postgres (32 random bytes, base64; unset: stored unencrypted), and how many
    # secrets a tenant may have and how large one may be.
    secrets_key: str = ""
    secrets_max_count: int = 100
    secrets_max_value_bytes: int = 8192
    # Schedules (docs/schedules.md): whether the orchestrator runs its scheduler loop, how
    # often it looks for due schedules, how many schedules a tenant may have, and how often
    # one may fire at most (a cron expression that fires more often is refused).
    scheduler: bool = True
    scheduler_tick_s: float = 5.0
    max_schedules: int = 100
    schedule_min_interval_s: float = 60.0
    # Row retention (docs/operations.md, "Retention"): what an execution that ended this
    # many days ago no longer needs in Postgres (its task rows above all) is deleted by the
    # orchestrator's hourly job and by `trawl prune`; 0 keeps everything.
    retention_days: int = 90

    def host_policy(self) -> RatePolicy | None:
        """The deployment-wide per-host limit, or None when there is none."""
        if self.host_max_rps <= 0:
            return None
        return RatePolicy(
            rate_per_s=self.host_max_rps,
            burst=1,  # "N a second" means at most N (+1) in any second, no bursts
            min_interval_s=0.0,
            max_concurrency=max(1, self.host_max_concurrency),
        )

    def ceilings(self) -> Ceilings:
        """The ``ceiling_*`` settings as the validator takes them."""
        prefix = "ceiling_"
        values = {
            name[len(prefix) :]: getattr(self, name)
            for name in self.__struct_fields__
            if name.startswith(prefix)
        }
        return Ceilings(**values)

    def __post_init__(self) -> None:
        from worker.netguard import AllowList  # a bad allow-list fails here, in one line

        AllowList.parse(self.allow_networks)
        from backends.secret_cipher import SecretCipher  # a bad key fails here too

        SecretCipher.from_setting(self.secrets_key)
        for name in ("worker_concurrency", "worker_browser_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{env_name(name)} must be at least 1, not {getattr(self, name)}")
        if self.autoscale_memory_mb < 0:
            raise ValueError("TRAWL_AUTOSCALE_MEMORY_MB must be 0 (automatic) or a number of MiB")
        if not 1 <= self.counter_shards <= MAX_COUNTER_SHARDS:
            raise ValueError(
                f"TRAWL_COUNTER_SHARDS must be between 1 (one row per execution) and "
                f"{MAX_COUNTER_SHARDS}, not {self.counter_shards}"
            )
        if self.retention_days < 0:
            raise ValueError(
                "TRAWL_RETENTION_DAYS must be 0 (keep everything) or a number of days, "
                f"not {self.retention_days}"
            )
        if self.scheduler and self.scheduler_tick_s <= 0:
            raise ValueError(
                "TRAWL_SCHEDULER_TICK_S must be above 0 (TRAWL_SCHEDULER=0 turns the scheduler off)"
            )
        if self.metrics_interval_s != 0 and not 1 <= self.metrics_interval_s <= 3600:
            raise ValueError(
                "TRAWL_METRICS_INTERVAL_S must be 0 (no backlog metrics) or 1 to 3600 seconds, "
                f"not {self.metrics_interval_s:g}"
            )

    def concurrency(self, level: int | Literal["auto"] | None = None) -> Concurrency:
        """Tasks in flight per engine: ``level`` N fixed at N, "auto" autoscaled under
        ``worker_concurrency``, None as ``worker_autoscale`` says."""
        from worker.autoscale import Concurrency, default_limits
        from worker.autoscale_probe import ProcessProbe

        if isinstance(level, int):
            return Concurrency.fixed(level)
        if level is None and not self.worker_autoscale:
            return Concurrency.fixed(self.worker_concurrency)
        limits = default_limits(self.worker_concurrency, self.worker_browser_concurrency)
        probe = ProcessProbe(memory_limit_mb=self.autoscale_memory_mb)
        return Concurrency.auto(self.worker_concurrency, limits, probe)

    def chromium(self) -> str | None:
        """The Chromium to launch: the configured one, else a system one, else Playwright's."""
        if self.chromium_path:
            return self.chromium_path
        for name in ("chromium", "chromium-browser", "google-chrome"):
            found = shutil.which(name)
            if found:
                return found
        return None


_TRUE = {"1", "true", "yes", "on"}


def load_settings(env: dict[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Read TRAWL_* (and PORT) from ``env`` (default: os.environ over ./.env)."""
    if env is None:
        path = dotenv or Path(".env")
        file_values = {k: v for k, v in dotenv_values(path).items() if v is not None}
        env = {**file_values, **os.environ}

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    values: dict[str, object] = {}
    for field in Settings.__struct_fields__:
        raw = get(env_name(field))
        if raw is None:
            continue
        values[field] = _convert(field, raw)
    return Settings(**values)  # type: ignore[arg-type]


def env_name(field: str) -> str:
    """The environment variable a setting is read from."""
    return "PORT" if field == "port" else f"TRAWL_{field.upper()}"


def _convert(field: str, raw: str) -> object:
    kind = Settings.__annotations__[field]
    if kind == "bool":
        return raw.strip().lower() in _TRUE
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            noun = "an integer" if kind == "int" else "a number"
            raise ValueError(f"{env_name(field)} must be {noun}, got {raw!r}") from None
    return raw
