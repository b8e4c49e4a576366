"""OpenTelemetry for the task runtime: one span per task with a child per stage and node,
one connected trace per crawl, and the metrics operators watch.

The trace context of the task that discovered a link travels in the link's task
(``Task.trace``, also Pub/Sub message attributes), so each task's span is a child of the
span of the page that linked to it, down from the start URLs: one crawl, one trace.

Without a configured SDK (``trawl.otel.configure`` reads the standard ``OTEL_*`` variables)
the providers are OpenTelemetry's no-op ones and this costs next to nothing. Tests pass
their own providers with in-memory exporters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Tracer,
    TracerProvider,
)

from backends.task import Task
from workflows.redact import redact_url

SCOPE = "trawl.worker"

# The execution the current task belongs to, for log lines written while it runs.
EXECUTION_ID: ContextVar[str | None] = ContextVar("trawl_execution_id", default=None)


@dataclass(slots=True)
class Telemetry:
    tracing: bool  # False: no SDK behind the tracer, spans are skipped outright
    measuring: bool  # False: no SDK behind the meter, instruments are not fed
    tracer: Tracer
    pages: Counter
    fetched_bytes: Counter
    fetch_duration: Histogram
    queue_lag: Histogram
    records: Counter
    funnel: Counter
    proxy_requests: Counter
    # What the ``trawl.worker.concurrency`` gauge reads: each engine's level, by engine.
    concurrency_sources: list[Callable[[], Mapping[str, int]]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> Telemetry:
        """Instruments from the given providers (default: the global ones)."""
        tracers = tracer_provider or trace.get_tracer_provider()
        meters = meter_provider or metrics.get_meter_provider()
        tracer = tracers.get_tracer(SCOPE)
        meter = meters.get_meter(SCOPE)
        sources: list[Callable[[], Mapping[str, int]]] = []
        meter.create_observable_gauge(
            "trawl.worker.concurrency",
            callbacks=[lambda options: _levels(sources, options)],
            unit="{page}",
            description="Pages an engine may fetch and process at once in this process "
            "(autoscaled, or the fixed --concurrency), by engine",
        )
        return cls(
            # The API's defaults do nothing but cost a little per page: skip them. The SDK is
            # installed (trawl.otel) before the runtime is assembled.
            tracing=not isinstance(tracers, ProxyTracerProvider | NoOpTracerProvider),
            measuring=not isinstance(meters, _ProxyMeterProvider | NoOpMeterProvider),
            tracer=tracer,
            pages=meter.create_counter(
                "trawl.pages", unit="{page}", description="Tasks finished, by outcome and phase"
            ),
            fetched_bytes=meter.create_counter(
                "trawl.fetch.bytes", unit="By", description="Bytes of the documents fetched"
            ),
            fetch_duration=meter.create_histogram(
                "trawl.fetch.duration", unit="s", description="Time to fetch (and render) a page"
            ),
            queue_lag=meter.create_histogram(
                "trawl.queue.lag",
                unit="s",
                description="From a task's publication to a worker taking it",
            ),
            records=meter.create_counter(
                "trawl.records", unit="{record}", description="Records written"
            ),
            funnel=meter.create_counter(
                "trawl.funnel",
                unit="{link}",
                description="Links discovered, in scope, new; pages fetched, extracted; "
                "by stage, target phase and marker",
            ),
            proxy_requests=meter.create_counter(
                "trawl.proxy.requests",
                unit="{request}",
                description="Requests through a workflow's proxies, by proxy (host:port) "
                "and outcome (ok, failed, banned)",
            ),
            concurrency_sources=sources,
        )

    def watch_concurrency(self, levels: Callable[[], Mapping[str, int]]) -> None:
        """Report ``levels()`` (engine -> level) as the ``trawl.worker.concurrency`` gauge."""
        self.concurrency_sources.append(levels)

    @contextlib.contextmanager
    def task_span(self, task: Task) -> Iterator[Span]:
        """The span of one task, a child of the span that discovered it."""
        if not self.tracing:
            yield INVALID_SPAN
            return
        parent: Context = propagate.extract(task.trace)
        attributes: dict[str, str | int] = {
            "trawl.execution_id": task.execution_id,
            "trawl.phase": task.phase,
            "trawl.depth": task.depth,
            "url.full": redact_url(task.url),  # no credentials or tokens in traces
        }
        if task.marker:
            attributes["trawl.marker"] = task.marker
        with self.tracer.start_as_current_span(
            "task", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield span

    @contextlib.contextmanager
    def execution_span(self, execution_id: str, workflow: str) -> Iterator[Span]:
        """The root of a crawl's trace: its start URLs are published inside it."""
        if not self.tracing:
            yield INVALID_SPAN
            return
        attributes = {"trawl.execution_id": execution_id, "trawl.workflow": workflow}
        with self.tracer.start_as_current_span(
            "execution", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            yield span

    @contextlib.contextmanager
    def stage(self, name: str, **attributes: str | int) -> Iterator[Span]:
        """A child span of the current one (a stage of a task, or a node)."""
        if not self.tracing:
            yield INVALID_SPAN
            return
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def observe_lag(self, task: Task, now: float) -> None:
        """Record how long ``task`` waited in the queue (``now``: epoch seconds)."""
        if self.measuring and task.published_at > 0:
            lag = max(now - task.published_at, 0.0)
            self.queue_lag.record(lag, {"trawl.phase": task.phase})

    def count_proxy(self, proxy: str, outcome: str) -> None:
        """One request through ``proxy`` (``host:port``, never its credentials)."""
        if self.measuring:
            self.proxy_requests.add(1, {"trawl.proxy": proxy, "trawl.outcome": outcome})

    def count_funnel(self, counts: Mapping[str, int]) -> None:
        if not self.measuring:
            return
        for key, count in counts.items():
            stage, phase, marker = key.split("|", 2)
            attributes = {"trawl.stage": stage, "trawl.phase": phase, "trawl.marker": marker}
            self.funnel.add(count, attributes)


def _levels(
    sources: list[Callable[[], Mapping[str, int]]], _options: CallbackOptions
) -> Iterable[Observation]:
    return [
        Observation(level, {"trawl.engine": engine})
        for levels in sources
        for engine, level in levels().items()
    ]


def current_trace() -> dict[str, str]:
    """The W3C trace context of the current span, for the tasks it publishes ({} if none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
