# SPDX-License-Identifier: Apache-2.0
"""Small in-process pieces shared by tests."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.resources import Resource

from tests.otlp_receiver import decode_attributes


class MemoryExporter:
    """Keeps a copy of every request the pipeline would send (no network), or fails on demand."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.fail = fail
        self.shut = False

    def export_request(self, request: ExportMetricsServiceRequest, timeout: float | None = None) -> bool:
        self.requests.append(ExportMetricsServiceRequest.FromString(request.SerializeToString()))
        return not self.fail

    def shutdown(self) -> None:
        self.shut = True


class MemoryLogExporter:
    """Keeps a copy of every logs request (no network), or fails on demand."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[ExportLogsServiceRequest] = []
        self.fail = fail

    def export_request(self, request: ExportLogsServiceRequest, timeout: float | None = None) -> bool:
        self.requests.append(ExportLogsServiceRequest.FromString(request.SerializeToString()))
        return not self.fail

    def shutdown(self) -> None:
        pass


class Resources:
    """Stands in for the resource directory: one Resource per key, built by ``attrs(key)`` on first
    use and kept until :meth:`rebuild`, as the directory keeps one until its sources change."""

    def __init__(self, attrs: Callable[[Any], Mapping[str, Any]]) -> None:
        self._attrs = attrs
        self._built: dict[Hashable, Resource] = {}

    def resource(self, key: Hashable) -> Resource:
        if key not in self._built:
            self._built[key] = Resource(self._attrs(key))
        return self._built[key]

    def rebuild(self, key: Hashable) -> None:
        self._built.pop(key, None)


def points(request: ExportMetricsServiceRequest, name: str) -> dict[tuple, dict]:
    """{(resource attrs, point attrs): {value, start, time, temporality, monotonic}} for one metric."""
    out = {}
    for rm in request.resource_metrics:
        res = tuple(sorted(decode_attributes(rm.resource.attributes).items()))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name != name:
                    continue
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for p in data.data_points:
                    value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    out[(res, tuple(sorted(decode_attributes(p.attributes).items())))] = {
                        "value": value, "start": p.start_time_unix_nano, "time": p.time_unix_nano,
                        "temporality": getattr(data, "aggregation_temporality", None),
                        "monotonic": getattr(data, "is_monotonic", None), "unit": m.unit}
    return out


def resource_values(request: ExportMetricsServiceRequest, attr: str) -> list:
    return [decode_attributes(rm.resource.attributes).get(attr) for rm in request.resource_metrics]


def cycle(agent) -> None:
    """One collection cycle, and its export waited for (the agent exports on a thread of its own)."""
    agent.cycle()
    agent.flush()
