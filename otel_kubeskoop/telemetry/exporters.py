# SPDX-License-Identifier: Apache-2.0
"""Build the OTLP exporters from resolved settings (plain values: the protocol, and the endpoint,
headers and timeout when the config file sets them).

The SDK exporter classes do not read ``OTEL_EXPORTER_OTLP_PROTOCOL`` (only auto-configuration
does, and it defaults to grpc against the spec), so the protocol is resolved by ``config`` and the
class chosen here. Exporters are built without endpoint, headers or timeout unless the config file
sets them, so every standard ``OTEL_EXPORTER_OTLP_*`` variable still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


class ExporterError(Exception):
    """An exporter that cannot be built from the given settings (e.g. deflate with gRPC)."""


def _kwargs(protocol: str, endpoint: str | None, headers: Mapping[str, str] | None, timeout: float | None,
            http_path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if endpoint:
        if protocol == "grpc":
            kwargs["endpoint"] = endpoint
        else:
            # The HTTP exporters use an explicit endpoint verbatim: append the signal path as the
            # OTEL_EXPORTER_OTLP_ENDPOINT rule does.
            kwargs["endpoint"] = endpoint.rstrip("/") + http_path
    if headers:
        kwargs["headers"] = dict(headers)
    if timeout is not None:
        kwargs["timeout"] = timeout
    return kwargs


def _http_request_exporter(**kwargs: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult

    class HTTPRequestExporter(OTLPMetricExporter):
        """Sends an already-built request through the exporter's per-request path (size check,
        retries with backoff and Retry-After, gzip, self-metrics); skips the SDK encoder."""

        def export_request(self, request: ExportMetricsServiceRequest) -> bool:
            if self._shutdown:
                return False
            return self._export_batch(request) is MetricExportResult.SUCCESS

    return HTTPRequestExporter(**kwargs)


def _grpc_request_exporter(**kwargs: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult

    class GRPCRequestExporter(OTLPMetricExporter):
        """Sends an already-built request through the exporter's retry loop (RetryInfo, channel
        re-creation on UNAVAILABLE, headers, TLS); skips the SDK encoder."""

        def _translate_data(self, data: Any) -> ExportMetricsServiceRequest:
            return data if isinstance(data, ExportMetricsServiceRequest) else super()._translate_data(data)

        def _count_data(self, data: Any) -> int:
            if not isinstance(data, ExportMetricsServiceRequest):
                return super()._count_data(data)
            return sum(len(getattr(m, m.WhichOneof("data")).data_points)
                       for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)

        def export_request(self, request: ExportMetricsServiceRequest) -> bool:
            return self._export(data=request) is MetricExportResult.SUCCESS

    return GRPCRequestExporter(**kwargs)


def metric_exporter(protocol: str, endpoint: str | None = None, headers: Mapping[str, str] | None = None,
                    timeout: float | None = None) -> Any:
    """An exporter with ``export_request(ExportMetricsServiceRequest) -> bool``, built on the SDK's
    OTLP exporter for ``protocol`` (``grpc`` or ``http/protobuf``; entered below its encoder:
    private members of the pinned SDK, covered by the privileged tests over both transports)."""
    try:
        make = _grpc_request_exporter if protocol == "grpc" else _http_request_exporter
        return make(**_kwargs(protocol, endpoint, headers, timeout, "/v1/metrics"))
    except Exception as exc:
        raise ExporterError(f"cannot build the OTLP {protocol} metric exporter: {exc}") from exc


def _http_log_request_exporter(**kwargs: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    class HTTPLogRequestExporter(OTLPLogExporter):
        """Sends an already-built logs request through the exporter's transport (retries with
        backoff and Retry-After, gzip, size limit); skips the SDK's per-record encoder."""

        def export_request(self, request: ExportLogsServiceRequest) -> bool:
            if self._shutdown:
                return False
            data = request.SerializeToString()
            if self._max_request_size and len(data) > self._max_request_size:
                return False
            return bool(self._client.export(data).success)

    return HTTPLogRequestExporter(**kwargs)


def _grpc_log_request_exporter(**kwargs: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    class GRPCLogRequestExporter(OTLPLogExporter):
        """Sends an already-built logs request through the exporter's retry loop."""

        def _translate_data(self, data: Any) -> ExportLogsServiceRequest:
            return data if isinstance(data, ExportLogsServiceRequest) else super()._translate_data(data)

        def _count_data(self, data: Any) -> int:
            if not isinstance(data, ExportLogsServiceRequest):
                return super()._count_data(data)
            return sum(len(sl.log_records) for rl in data.resource_logs for sl in rl.scope_logs)

        def export_request(self, request: ExportLogsServiceRequest) -> bool:
            return self._export(data=request) is LogRecordExportResult.SUCCESS

    return GRPCLogRequestExporter(**kwargs)


def log_exporter(protocol: str, endpoint: str | None = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None) -> Any:
    """An exporter with ``export_request(ExportLogsServiceRequest) -> bool`` on the SDK's OTLP log
    exporter for ``protocol`` (private members of the pinned SDK, as for metrics)."""
    try:
        make = _grpc_log_request_exporter if protocol == "grpc" else _http_log_request_exporter
        return make(**_kwargs(protocol, endpoint, headers, timeout, "/v1/logs"))
    except Exception as exc:
        raise ExporterError(f"cannot build the OTLP {protocol} log exporter: {exc}") from exc


def loki_log_exporter(addr: str) -> Any:
    """Upstream's ``loki`` sink, sent to Loki's native OTLP endpoint (Loki 3.x).

    ``addr`` is a host (upstream's form; port 3100 as upstream hard-codes), a host:port, or a URL.
    """
    base = addr if "://" in addr else f"http://{addr}"
    if "://" not in addr and ":" not in addr:
        base += ":3100"
    return _http_log_request_exporter(endpoint=base.rstrip("/") + "/otlp/v1/logs")
