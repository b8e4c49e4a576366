"""JSON log lines carry the ids an operator searches by."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from trawl import otel
from trawl.logs import JsonFormatter
from worker.telemetry import EXECUTION_ID


def test_a_line_written_in_a_task_carries_its_trace_and_execution() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.makeLogRecord({"msg": "fetch failed", "levelname": "WARNING"})
    token = EXECUTION_ID.set("ex-42")
    try:
        with tracer.start_as_current_span("task") as span:
            line = json.loads(JsonFormatter().format(record))
    finally:
        EXECUTION_ID.reset(token)
    context = span.get_span_context()
    assert line["message"] == "fetch failed"
    assert line["severity"] == "WARNING"
    assert line["execution_id"] == "ex-42"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    outside = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside and "execution_id" not in outside


def test_without_a_collector_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert otel.configure("trawl-test") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otel.configure("trawl-test") is None
