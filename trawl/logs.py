"""Logging for the long-running processes: one JSON object per line, or plain text.

Cloud Logging reads ``severity`` and ``message`` from JSON lines on stdout; extra fields
passed with ``extra={"execution_id": ..., "url": ...}`` are carried as they are, so a line
can be found by execution, task URL or trace id. Lines written while a task runs carry its
``execution_id``, and its ``trace_id`` and ``span_id`` when tracing is on.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace

from worker.telemetry import EXECUTION_ID
from workflows.redact import redact_text, use_params

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_encoder = msgspec.json.Encoder(enc_hook=repr)  # anything else is logged as its repr


class JsonFormatter(logging.Formatter):
    """``{"time", "severity", "logger", "message", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        entry.update(
            (key, redact_text(value) if isinstance(value, str) else value)
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry.setdefault("trace_id", format(span.trace_id, "032x"))
            entry.setdefault("span_id", format(span.span_id, "016x"))
        execution_id = EXECUTION_ID.get()
        if execution_id is not None:
            entry.setdefault("execution_id", execution_id)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return _encoder.encode(entry).decode("utf-8", "replace")


class TextFormatter(logging.Formatter):
    """Plain lines, URLs redacted like the JSON ones."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure(fmt: str = "json", level: int = logging.INFO, redact_params: str = "") -> None:
    """Route the root logger to stdout in ``fmt`` (``json`` or ``text``). URLs in lines and
    spans lose their credentials and the values of the query parameters named in
    ``redact_params`` (comma-separated globs; empty: a default list of token names)."""
    use_params(redact_params.split(","))
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Google clients log every retry at INFO; their warnings still come through.
    for noisy in ("google", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
