# SPDX-License-Identifier: Apache-2.0
"""Small in-process pieces shared by tests."""

from __future__ import annotations

from opentelemetry.sdk.metrics import Counter, ObservableCounter, ObservableUpDownCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult, MetricsData


class CaptureExporter(MetricExporter):
    """An in-memory MetricExporter (the SDK interface, no network): keeps every MetricsData."""

    def __init__(self, delta: bool = False, fail: bool = False) -> None:
        temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        super().__init__(preferred_temporality={
            Counter: temporality, ObservableCounter: temporality,
            UpDownCounter: AggregationTemporality.CUMULATIVE, ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
        })
        self.exports: list[MetricsData] = []
        self.fail = fail

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.FAILURE if self.fail else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def points(data: MetricsData, name: str) -> dict[tuple, tuple]:
    """{(resource attrs..., point attrs...): (value, start_time, temporality)} for one metric."""
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name != name:
                    continue
                for p in m.data.data_points:
                    key = (tuple(sorted(rm.resource.attributes.items())), tuple(sorted(p.attributes.items())))
                    out[key] = (p.value, p.start_time_unix_nano, getattr(m.data, "aggregation_temporality", None))
    return out


def resource_keys(data: MetricsData, attr: str) -> list:
    return [rm.resource.attributes.get(attr) for rm in data.resource_metrics]
