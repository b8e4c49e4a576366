"""What the API handlers use: the ports, the settings that bound requests, the checks
``/readyz`` runs and how preview fetches pages. Built by the composition root (``trawl
orchestrator``) over the real adapters, or by tests over the memory ones."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from litestar.di import NamedDependency

from backends.clock import Clock, SystemClock
from backends.fetcher import Fetcher
from orchestrator.quotas import Quotas, StreamSlots, TenantGate
from worker.assemble import Ports
from workflows.ceilings import Ceilings
from workflows.isolated import Offload
from workflows.spec import Workflow

Check = Callable[[], Awaitable[None]]


class OpenFetchers(Protocol):
    """Opens the fetchers a workflow needs for a preview; closed when the block ends."""

    def __call__(
        self, workflow: Workflow
    ) -> contextlib.AbstractAsyncContextManager[Mapping[str, Fetcher]]: ...


class UrlGuard(Protocol):
    """Refuses URLs the deployment must not crawl (the SSRF guard)."""

    async def check_url(self, url: str) -> None: ...


@dataclass(slots=True)
class Limits:
    max_request_bytes: int = 1024 * 1024
    max_running_executions: int = 10
    events_interval_s: float = 1.0
    stall_after_s: float = 180.0  # no task finished this long: shown as stalled
    check_timeout_s: float = 2.0
    ceilings: Ceilings = field(default_factory=Ceilings)
    quotas: Quotas = field(default_factory=Quotas)
    queue_window: int = 0  # tasks of one execution in the queue at once (0: no window)
    # Secrets (docs/sessions.md): how many one tenant may have, and how large one may be.
    max_secrets: int = 100
    max_secret_bytes: int = 8192
    # Schedules (docs/schedules.md): a scheduler loop every this many seconds while the app
    # serves (0: none in this process), schedules per tenant, and the shortest interval
    # between two fires a cron expression may ask for.
    scheduler_tick_s: float = 0.0
    max_schedules: int = 100
    schedule_min_interval_s: float = 60.0
    # The backlog metrics (orchestrator/metrics.py): read every this many seconds by the
    # orchestrator holding the metrics claim (0: not in this process).
    metrics_interval_s: float = 0.0
    # Row retention (docs/operations.md, "Retention"): an hourly job prunes what executions
    # that ended more than this many days ago no longer need (0: no job in this process).
    retention_days: int = 0


@dataclass(slots=True)
class Services:
    ports: Ports
    open_fetchers: OpenFetchers
    guard: UrlGuard
    limits: Limits = field(default_factory=Limits)
    checks: dict[str, Check] = field(default_factory=dict)
    # Parsing and validating tenants' workflows, in helper processes with a deadline.
    admission: Offload = field(default_factory=Offload)
    admission_slots: TenantGate = field(default_factory=TenantGate)
    streams: StreamSlots = field(default_factory=StreamSlots)
    clock: Clock = field(default_factory=SystemClock)
    # The deployment's webhook secret (TRAWL_WEBHOOK_SECRET); "": webhooks are refused.
    webhook_secret: str = ""


# How handlers ask for them (Litestar's dependency injection, by name).
ServicesDep = NamedDependency[Services]
Tenant = NamedDependency[str]
