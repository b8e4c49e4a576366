"""An OTLP/HTTP collector for tests: an aiohttp app on 127.0.0.1 (a free port) that takes what
an OpenTelemetry SDK exports (``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at it), decodes the
metrics it is sent, and keeps the latest value of every gauge by metric name.

It runs on the test's own event loop, so the test must be awaiting for it to answer.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse


@dataclass
class GaugePoint:
    value: float
    attributes: dict[str, str]
    service: str  # the exporting process's service.name


@dataclass
class OtlpReceiver:
    gauges: dict[str, list[GaugePoint]] = field(default_factory=dict)  # latest export's
    exports: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def latest(self, name: str) -> float | None:
        """The gauge's value in the latest export that had it (one series), or None."""
        points = self.gauges.get(name)
        if not points:
            return None
        assert len(points) == 1, f"{name}: {len(points)} series, expected one"
        return points[0].value

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportMetricsServiceRequest()
        export.ParseFromString(body)
        self.exports += 1
        for resource in export.resource_metrics:
            service = next(
                (
                    a.value.string_value
                    for a in resource.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.WhichOneof("data") != "gauge":
                        continue
                    self.gauges[metric.name] = [
                        GaugePoint(
                            value=point.as_double
                            if point.WhichOneof("value") == "as_double"
                            else point.as_int,
                            attributes={a.key: a.value.string_value for a in point.attributes},
                            service=service,
                        )
                        for point in metric.gauge.data_points
                    ]
        reply = ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def _traces(self, request: web.Request) -> web.Response:
        await request.read()
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def __aenter__(self) -> OtlpReceiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/metrics", self._metrics)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
