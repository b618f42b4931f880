# SPDX-License-Identifier: Apache-2.0
"""Build the OTLP exporters from resolved settings.

The SDK exporter classes do not read ``OTEL_EXPORTER_OTLP_PROTOCOL`` (only auto-configuration
does, and it defaults to grpc against the spec), so the protocol is resolved by ``config`` and the
class chosen here. Exporters are built without endpoint, headers or timeout unless the config file
sets them, so every standard ``OTEL_EXPORTER_OTLP_*`` variable still applies.
"""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.config import OTLPSettings

# Data points per request: the Collector's gRPC receiver rejects messages over 4 MiB by default.
MAX_EXPORT_BATCH_SIZE = 8192


class ExporterError(Exception):
    """An exporter that cannot be built from the given settings (e.g. deflate with gRPC)."""


def _kwargs(settings: OTLPSettings, http_path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if settings.endpoint:
        if settings.protocol == "grpc":
            kwargs["endpoint"] = settings.endpoint
        else:
            # The HTTP exporters use an explicit endpoint verbatim: append the signal path as the
            # OTEL_EXPORTER_OTLP_ENDPOINT rule does.
            kwargs["endpoint"] = settings.endpoint.rstrip("/") + http_path
    if settings.headers:
        kwargs["headers"] = dict(settings.headers)
    if settings.timeout is not None:
        kwargs["timeout"] = settings.timeout
    return kwargs


def metric_exporter(settings: OTLPSettings) -> Any:
    try:
        if settings.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter(max_export_batch_size=MAX_EXPORT_BATCH_SIZE, **_kwargs(settings, "/v1/metrics"))
    except Exception as exc:
        raise ExporterError(f"cannot build the OTLP {settings.protocol} metric exporter: {exc}") from exc


def log_exporter(settings: OTLPSettings) -> Any:
    try:
        if settings.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        return OTLPLogExporter(**_kwargs(settings, "/v1/logs"))
    except Exception as exc:
        raise ExporterError(f"cannot build the OTLP {settings.protocol} log exporter: {exc}") from exc


def loki_log_exporter(addr: str) -> Any:
    """Upstream's ``loki`` sink, sent to Loki's native OTLP endpoint (Loki 3.x).

    ``addr`` is a host (upstream's form; port 3100 as upstream hard-codes), a host:port, or a URL.
    """
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    base = addr if "://" in addr else f"http://{addr}"
    if "://" not in addr and ":" not in addr:
        base += ":3100"
    return OTLPLogExporter(endpoint=base.rstrip("/") + "/otlp/v1/logs")
