"""The backlog metrics: what the worker pool is scaled on and what the dashboards and alerts
watch, read from the ledger and exported as OpenTelemetry observable gauges.

Trawl knows its backlog exactly without asking Cloud Monitoring (which the Pub/Sub emulator
does not have): ``TaskLedger.backlog`` counts the queued tasks of running executions
(registered, released, unfinished: in Pub/Sub or in a worker's hands), the ones held back by
queue windows, and when the oldest queued one was registered. Stalled executions are counted
by worker/stall.py's own judgement, the one ``trawl status`` shows.

The numbers are global, so one process reports them: each orchestrator runs this loop, and
only the one holding the ``metrics`` claim (a TaskLedger claim, ``claim_ttl_s`` long, renewed
every round) reads the ledger and reports; the others read nothing and report nothing. A
dashboard summing over instances therefore sees each task once, and N orchestrators cost the
database one reader. Should the leader die, another takes the claim once it lapses: the
series moves to that instance after a gap of at most ``claim_ttl_s`` plus a round. A leader
whose reads fail (the database is down) stops reporting once its last reading is as old as
its claim, rather than report numbers that may no longer be true, or that another instance
now reports.

The gauges are observed when the SDK exports (every ``OTEL_METRIC_EXPORT_INTERVAL``), from
the last reading, in the exporter's thread: a callback reads one attribute and the clock,
never the database. ``trawl.queue.oldest_unacked_age`` is computed at that moment, so it keeps
growing between readings as a real backlog would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation
from opentelemetry.metrics._internal import _ProxyMeterProvider

from backends.clock import Clock
from backends.state import Backlog, StateStore
from orchestrator.background import Background, guarded
from orchestrator.services import Services
from worker.stall import health_of

log = logging.getLogger("trawl.metrics")

SCOPE = "trawl.orchestrator"
CLAIM = "metrics"
# Stalled executions counted one by one in a round; beyond, the gauge shows this many.
MAX_STALLED_COUNTED = 1000


@dataclass(frozen=True, slots=True)
class Reading:
    """One round's numbers, and when (``Clock.now``) they were read."""

    backlog: Backlog
    stalled: int
    read_at: float


def process_owner() -> str:
    """This process's name in the claim: unique across instances and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class BacklogMetrics:
    """Reads the backlog every ``interval_s`` while this process holds the metrics claim, and
    reports it through observable gauges on ``meter_provider`` (default: the global one)."""

    def __init__(
        self,
        state: StateStore,
        clock: Clock,
        *,
        interval_s: float,
        stall_after_s: float,
        owner: str | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the backlog metrics' interval must be above 0 s")
        self.state = state
        self.clock = clock
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        self.owner = owner or process_owner()
        self._reading: Reading | None = None
        self._job = Background("backlog-metrics", self.run)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        meter.create_observable_gauge(
            "trawl.queue.backlog",
            callbacks=[self._gauge(lambda r: r.backlog.queued)],
            unit="{task}",
            description="Tasks of running executions in the queue or in a worker's hands, "
            "not finished (what the worker pool scales on)",
        )
        meter.create_observable_gauge(
            "trawl.queue.held",
            callbacks=[self._gauge(lambda r: r.backlog.held)],
            unit="{task}",
            description="Tasks of running executions held back by their queue window",
        )
        meter.create_observable_gauge(
            "trawl.queue.oldest_unacked_age",
            callbacks=[self._gauge(self._oldest_age_s)],
            unit="s",
            description="Age of the oldest queued task (since its registration, release "
            "or re-publication); 0 when none is queued",
        )
        meter.create_observable_gauge(
            "trawl.executions.running",
            callbacks=[self._gauge(lambda r: r.backlog.running)],
            unit="{execution}",
            description="Executions running",
        )
        meter.create_observable_gauge(
            "trawl.executions.stalled",
            callbacks=[self._gauge(lambda r: r.stalled)],
            unit="{execution}",
            description="Running executions with no task finished for TRAWL_STALL_AFTER_S "
            "(trawl status shows why)",
        )

    @property
    def claim_ttl_s(self) -> float:
        """How long the claim holds without renewal: three rounds."""
        return 3 * self.interval_s

    @property
    def reading(self) -> Reading | None:
        """The last reading while it may still be reported (see the module docstring)."""
        reading = self._reading
        if reading is None or self.clock.now() - reading.read_at >= self.claim_ttl_s:
            return None
        return reading

    async def refresh(self) -> Reading | None:
        """One round: take or renew the claim and, holding it, read the ledger. None when
        another process holds the claim (this one then reports nothing)."""
        if not await self.state.claim(CLAIM, self.owner, self.claim_ttl_s):
            self._reading = None
            return None
        read_at = self.clock.now()
        backlog = await self.state.backlog()
        stalled = await self._stalled()
        self._reading = Reading(backlog=backlog, stalled=stalled, read_at=read_at)
        return self._reading

    async def _stalled(self) -> int:
        """Running executions worker/stall.py judges stalled. The sweep's candidates (running
        with unfinished tasks and no finish for ``stall_after_s``) are few; each is judged
        with the reads ``trawl status`` makes."""
        now = self.clock.wall()
        candidates = await self.state.sweep_candidates(
            stalled_before=now - timedelta(seconds=self.stall_after_s),
            limit=MAX_STALLED_COUNTED,
        )
        stalled = 0
        for execution_id in candidates:
            execution = await self.state.get_execution(execution_id)
            if execution is None or execution.status != "running":
                continue  # a cancel the sweep has to settle, not a stall
            progress = await self.state.progress(execution_id)
            health = await health_of(
                self.state, execution, progress, now=now, stall_after_s=self.stall_after_s
            )
            if health.state == "stalled":
                stalled += 1
        return stalled

    def _oldest_age_s(self, reading: Reading) -> float:
        oldest = reading.backlog.oldest_queued_at
        if oldest is None:
            return 0.0
        return max((self.clock.wall() - oldest).total_seconds(), 0.0)

    def _gauge(
        self, value: Callable[[Reading], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            reading = self.reading
            return [] if reading is None else [Observation(value(reading))]

        return observe

    # -- the loop

    async def run(self) -> None:
        """A round every ``interval_s`` until cancelled; a failed round is logged, and the
        gauges go quiet once the last good reading is as old as the claim."""
        while True:
            await guarded(log, "backlog metrics round", self.refresh)
            await self.clock.sleep(self.interval_s)

    def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        """End the loop; the gauges report nothing from now on."""
        self._reading = None
        await self._job.stop()


def measuring(meter_provider: MeterProvider) -> bool:
    """Whether an SDK is behind ``meter_provider`` (without one nothing would be exported,
    so the ledger is not read for nothing)."""
    return not isinstance(meter_provider, _ProxyMeterProvider | NoOpMeterProvider)


def metrics_lifespan(
    services: Services, meter_provider: MeterProvider | None = None
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan hook: with ``Limits.metrics_interval_s`` > 0 and an OpenTelemetry
    SDK installed (``trawl.otel.configure``: an OTLP endpoint is set), the backlog metrics
    run while the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        interval_s = services.limits.metrics_interval_s
        provider = meter_provider or metrics.get_meter_provider()
        if interval_s <= 0 or not measuring(provider):
            yield
            return
        job = BacklogMetrics(
            services.ports.state,
            services.clock,
            interval_s=interval_s,
            stall_after_s=services.limits.stall_after_s,
            meter_provider=provider,
        )
        job.start()
        try:
            yield
        finally:
            await job.stop()

    return lifespan
