"""OpenTelemetry over a real embedded crawl of the local test site, read back from the SDK's
in-memory exporters: one connected trace per crawl, a span per task with its stages and
nodes, and metrics that agree with the crawl's counts."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.crawling import make_workflow
from tests.site import SiteServer
from trawl.embedded import open_fetchers, run_embedded
from trawl.settings import Settings
from worker.telemetry import Telemetry

pytestmark = pytest.mark.integration

SIZE = 31  # node 0, its 10 children, and 20 grandchildren


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    points: dict[str, list[Any]] = defaultdict(list)
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name].extend(metric.data.data_points)
    return points


async def test_a_crawl_is_one_trace_with_a_span_per_task_stage_and_node(
    site: SiteServer, tmp_path: Path
) -> None:
    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    reader = InMemoryMetricReader()
    telemetry = Telemetry.create(tracer_provider, MeterProvider(metric_readers=[reader]))

    token = uuid.uuid4().hex[:8]
    workflow = make_workflow([site.url(f"/graph/{token}/{SIZE}/0")], max_depth=5)
    async with open_fetchers(workflow, Settings()) as (fetchers, robots):
        result = await run_embedded(
            workflow, out_dir=tmp_path, fetchers=fetchers, robots=robots, telemetry=telemetry
        )
    assert result.execution.status == "completed"
    spans = spans_out.get_finished_spans()
    by_id: dict[int, ReadableSpan] = {s.context.span_id: s for s in spans}
    children: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        if span.parent is not None:
            children[span.parent.span_id].append(span)

    # One trace: the execution span is its root, every task span is under it.
    [root] = [s for s in spans if s.name == "execution"]
    assert root.parent is None
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    tasks = [s for s in spans if s.name == "task"]
    assert len(tasks) == SIZE

    def task_above(span: ReadableSpan) -> ReadableSpan:
        """The nearest task (or the execution) span above ``span``."""
        assert span.parent is not None
        above = by_id[span.parent.span_id]
        return above if above.name in ("task", "execution") else task_above(above)

    depth_of = {s.context.span_id: int(s.attributes["trawl.depth"]) for s in tasks}
    for task in tasks:
        above = task_above(task)
        if depth_of[task.context.span_id] == 0:
            assert above is root  # the start URL was published inside the execution span
        else:  # a child of the page that discovered it, one level up
            assert above.name == "task"
            assert depth_of[above.context.span_id] == depth_of[task.context.span_id] - 1

    # Each task: its stages, and under "nodes" one span per node of the phase, in order.
    for task in tasks:
        stages = [
            s.name for s in sorted(children[task.context.span_id], key=lambda s: s.start_time)
        ]
        assert stages == ["politeness", "fetch", "nodes", "frontier"], stages
        assert task.attributes["trawl.outcome"] == "succeeded"
        [nodes] = [s for s in children[task.context.span_id] if s.name == "nodes"]
        node_spans = sorted(children[nodes.context.span_id], key=lambda s: s.start_time or 0)
        assert [s.name for s in node_spans] == ["node extract", "node extract_links"]

    check_metrics(reader, result.progress.funnel)


def check_metrics(reader: InMemoryMetricReader, summary: dict[str, dict[str, int]]) -> None:
    points = metric_points(reader)
    assert sum(p.value for p in points["trawl.pages"]) == SIZE
    assert sum(p.value for p in points["trawl.records"]) == SIZE
    assert sum(p.count for p in points["trawl.fetch.duration"]) == SIZE
    assert sum(p.count for p in points["trawl.queue.lag"]) == SIZE
    assert sum(p.value for p in points["trawl.fetch.bytes"]) > 0
    funnel = Counter()
    for point in points["trawl.funnel"]:
        funnel[point.attributes["trawl.stage"]] += point.value
    # Every node but the root was found as new by its parent; each page was fetched and
    # extracted once; links back to parents and the root were discovered but not new.
    assert funnel["new"] == SIZE - 1
    assert funnel["fetched"] == funnel["extracted"] == SIZE
    assert funnel["discovered"] >= funnel["in_scope"] >= funnel["new"]
    summary_funnel = summary["page|"]
    assert summary_funnel["new"] == SIZE - 1
    assert summary_funnel["fetched"] == SIZE
