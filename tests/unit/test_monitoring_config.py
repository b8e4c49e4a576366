"""deploy/monitoring agrees with the code: the dashboard and every alert policy load, have
what the Cloud Monitoring APIs require, name only metrics that exist, and read each metric in a
way that fits its kind. A Trawl metric (workload.googleapis.com/<name>) must be an instrument
the code creates under that name, so renaming or dropping one fails here, not on a blank
dashboard. deploy.sh fills in their ${...} placeholders and finds them by display name."""

from __future__ import annotations

import ast
import functools
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
ALERTS = sorted((MONITORING / "alerts").glob("*.json"))
DEPLOY_SH = ROOT / "deploy" / "cloudrun" / "deploy.sh"
COLLECTOR = ROOT / "deploy" / "cloudrun" / "otel-collector.yaml"
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"][
    "build"
]["targets"]["wheel"]["packages"]

WORKLOAD = "workload.googleapis.com/"
# OpenTelemetry instrument kinds and what Cloud Monitoring makes of them (the googlecloud
# exporter): counters and histograms are cumulative, read as a rate or a delta; gauges are
# read as they are.
INSTRUMENTS = {
    "create_counter": "counter",
    "create_up_down_counter": "gauge",
    "create_histogram": "histogram",
    "create_gauge": "gauge",
    "create_observable_gauge": "gauge",
    "create_observable_counter": "counter",
    "create_observable_up_down_counter": "gauge",
}
# What the collector sidecar scrapes from the PgBouncer exporter (gauges), by the name it
# exports them under.
SIDECAR_METRICS = {
    "pgbouncer_pools_client_waiting_connections": "gauge",
    "pgbouncer_pools_client_maxwait_seconds": "gauge",
}
# Google Cloud's own metrics the files read, with their monitored resource.
NATIVE_METRICS = {
    "pubsub.googleapis.com/subscription/num_undelivered_messages": "pubsub_subscription",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": "pubsub_subscription",
    "redis.googleapis.com/stats/memory/usage_ratio": "redis_instance",
    "run.googleapis.com/container/instance_count": "cloud_run_worker_pool",
}
RATE_ALIGNERS = {"ALIGN_RATE", "ALIGN_DELTA"}
GAUGE_ALIGNERS = {"ALIGN_MAX", "ALIGN_MIN", "ALIGN_MEAN", "ALIGN_NEXT_OLDER", "ALIGN_SUM"}
PERCENTILES = {"REDUCE_PERCENTILE_50", "REDUCE_PERCENTILE_95", "REDUCE_PERCENTILE_99"}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # deploy.sh's render()
METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
RESOURCE_TYPE = re.compile(r'resource\.type\s*=\s*"([^"]+)"')


@functools.cache
def trawl_instruments() -> dict[str, str]:
    """Every instrument the packages create: name -> kind."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                kind = INSTRUMENTS.get(node.func.attr)
                if kind and node.args and isinstance(node.args[0], ast.Constant):
                    found[str(node.args[0].value)] = kind
    return found


def load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def filters(node: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(filter, its aggregations) for every time series query and condition in ``node``."""
    if isinstance(node, dict):
        if "timeSeriesFilter" in node:
            query = node["timeSeriesFilter"]
            yield query["filter"], [query["aggregation"]]
        for key in ("conditionThreshold", "conditionAbsent"):
            if key in node:
                condition = node[key]
                yield condition["filter"], condition["aggregations"]
                if "denominatorFilter" in condition:
                    yield condition["denominatorFilter"], condition["denominatorAggregations"]
        for value in node.values():
            yield from filters(value)
    elif isinstance(node, list):
        for value in node:
            yield from filters(value)


def metric_kind(metric_type: str) -> str | None:
    """The kind of a workload metric, or None when nothing exports it."""
    name = metric_type.removeprefix(WORKLOAD)
    return trawl_instruments().get(name) or SIDECAR_METRICS.get(name)


FILES = [DASHBOARD, *ALERTS]


def test_there_is_a_dashboard_and_alert_policies() -> None:
    names = {path.stem for path in ALERTS}
    expected = {"queue-age", "stalled-executions", "dead-letters", "redis-memory"}
    assert expected | {"pgbouncer-waiting", "failure-ratio", "backlog-metric-absent"} <= names


def test_the_scan_finds_the_instruments() -> None:
    """The AST scan sees what worker/telemetry.py and orchestrator/metrics.py create."""
    instruments = trawl_instruments()
    assert instruments["trawl.pages"] == "counter"
    assert instruments["trawl.queue.lag"] == "histogram"
    assert instruments["trawl.queue.backlog"] == "gauge"
    assert instruments["trawl.executions.stalled"] == "gauge"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_metric_exists_and_is_read_as_its_kind(path: Path) -> None:
    found = list(filters(load(path)))
    assert found, f"{path.name} queries nothing"
    for filter_, aggregations in found:
        [metric_type] = METRIC_TYPE.findall(filter_)
        if metric_type.startswith(WORKLOAD):
            kind = metric_kind(metric_type)
            assert kind, f"{path.name}: nothing exports {metric_type} (see {__file__})"
        else:
            assert metric_type in NATIVE_METRICS, f"{path.name}: unknown metric {metric_type}"
            assert RESOURCE_TYPE.findall(filter_) == [NATIVE_METRICS[metric_type]], filter_
            kind = "gauge"
        for aggregation in aggregations:
            aligner = aggregation["perSeriesAligner"]
            reducer = aggregation.get("crossSeriesReducer", "REDUCE_NONE")
            assert re.fullmatch(r"\d+s", aggregation["alignmentPeriod"]), aggregation
            if kind == "gauge":
                assert aligner in GAUGE_ALIGNERS, f"{path.name}: {aligner} on gauge {metric_type}"
            else:
                assert aligner in RATE_ALIGNERS, f"{path.name}: {aligner} on {kind} {metric_type}"
            if reducer in PERCENTILES:
                assert kind == "histogram", f"{path.name}: {reducer} on {kind} {metric_type}"
            for field in aggregation.get("groupByFields", []):
                assert re.fullmatch(r"(metric|resource)\.labels?\.[a-z_]+", field), field


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_placeholders_are_deploy_sh_variables(path: Path) -> None:
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", DEPLOY_SH.read_text(), re.MULTILINE))
    used = set(PLACEHOLDER.findall(path.read_text()))
    assert used <= assigned, f"{path.name} uses {used - assigned}, which deploy.sh never sets"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_deploy_sh_finds_it_by_display_name(path: Path) -> None:
    """deploy.sh's display_name(): the first key, on a line of its own."""
    body = load(path)
    assert next(iter(body)) == "displayName"
    lines = re.findall(r'^  "displayName": "(.*)",$', path.read_text(), re.MULTILINE)
    assert lines[:1] == [json.dumps(body["displayName"])[1:-1]]


def test_the_dashboard_tiles() -> None:
    dashboard = load(DASHBOARD)
    layout = dashboard["mosaicLayout"]
    columns = layout["columns"]
    taken: set[tuple[int, int]] = set()
    titles = []
    for tile in layout["tiles"]:
        x, y, w, h = (tile.get("xPos", 0), tile.get("yPos", 0), tile["width"], tile["height"])
        assert x >= 0 and x + w <= columns, tile["widget"]["title"]
        cells = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        assert not cells & taken, f"{tile['widget']['title']} overlaps another tile"
        taken |= cells
        widget = tile["widget"]
        titles.append(widget["title"])
        [kind] = [k for k in ("xyChart", "scorecard") if k in widget]
        if kind == "xyChart":
            assert widget["xyChart"]["dataSets"]
            for dataset in widget["xyChart"]["dataSets"]:
                assert dataset["plotType"] in {"LINE", "STACKED_AREA", "STACKED_BAR"}
                assert "timeSeriesFilter" in dataset["timeSeriesQuery"]
        else:
            assert "timeSeriesFilter" in widget["scorecard"]["timeSeriesQuery"]
    text = " ".join(titles).lower()
    for subject in (
        "pages per second",
        "error class",
        "backlog",
        "oldest",
        "dead letters",
        "redis memory",
        "pgbouncer",
        "stalled",
    ):
        assert subject in text, f"no tile for {subject}"


@pytest.mark.parametrize("path", ALERTS, ids=lambda p: p.name)
def test_alert_policies(path: Path) -> None:
    policy = load(path)
    assert policy["combiner"] in {"OR", "AND"}
    assert policy["severity"] in {"CRITICAL", "ERROR", "WARNING"}
    assert policy["documentation"]["mimeType"] == "text/markdown"
    assert len(policy["documentation"]["content"]) > 100  # says what to do
    assert policy["conditions"]
    for condition in policy["conditions"]:
        assert condition["displayName"]
        [kind] = [k for k in ("conditionThreshold", "conditionAbsent") if k in condition]
        body = condition[kind]
        assert re.fullmatch(r"\d+s", body["duration"])
        if kind == "conditionThreshold":
            assert body["comparison"] in {"COMPARISON_GT", "COMPARISON_LT"}
            assert isinstance(body["thresholdValue"], int | float)


def test_alert_policy_names_are_unique() -> None:
    names = [load(path)["displayName"] for path in ALERTS]
    assert len(names) == len(set(names))


def test_the_collector_scrapes_what_the_dashboards_read_of_pgbouncer() -> None:
    """The sidecar metrics come from the PgBouncer exporter the collector scrapes, through
    the exporter that writes workload.googleapis.com/<name>."""
    config = yaml.safe_load(COLLECTOR.read_text())
    [scrape] = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["job_name"] == "pgbouncer"
    assert "prometheus" in config["service"]["pipelines"]["metrics"]["receivers"]
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["googlecloud"]
    assert config["exporters"]["googlecloud"]["metric"]["prefix"] + "/" == WORKLOAD
