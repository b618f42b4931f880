# SPDX-License-Identifier: Apache-2.0
"""The metric pipeline: one MeterProvider per resource, one thread-less reader each, one export.

Design (a2) of ``reference/otel-python.md``: each resource (the node, each namespace) has its own
``MeterProvider`` with a :class:`PullReader`; each cycle the agent hands the pipeline the cycle's
samples, collects every reader, concatenates their ``ResourceMetrics`` and makes one
``exporter.export()`` call. A resource that disappears is collected once more (with its last
values) and then shut down and dropped.

Kernel counters are observable counters reported as "increase since first seen": a value present
when the agent started is taken as the baseline, so the first export does not carry a namespace's
whole history with a start time of "now" (backends that inject a zero at start time would show a
spike). Series that appear later (a new namespace, a new interface) start from zero, so their
whole history is counted. A counter that goes backwards (an interface re-created under the same
name) continues from where it was.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.probe import Sample
from otel_kubeskoop.telemetry.instruments import InstrumentKind, InstrumentSpec

log = logging.getLogger(__name__)

SCOPE = "otel_kubeskoop.probes"
Attrs = tuple[tuple[str, Any], ...]


class PullReader(MetricReader):
    """A reader with no thread: it collects only when :meth:`take` is called."""

    def __init__(self, exporter: MetricExporter) -> None:
        # As PeriodicExportingMetricReader does: adopt the exporter's temporality and aggregation,
        # so OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE reaches the wire.
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self._data: MetricsData | None = None

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._data = metrics_data

    def take(self, timeout_millis: float = 10_000) -> MetricsData | None:
        self._data = None
        self.collect(timeout_millis=timeout_millis)
        data, self._data = self._data, None
        return data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._data = None


@dataclass
class _Counter:
    baseline: float
    last: float
    offset: float = 0.0

    def update(self, raw: float) -> float:
        if raw < self.last:  # the kernel counter restarted: keep our sum monotonic
            self.offset += self.last - self.baseline
            self.baseline = 0
        self.last = raw
        return self.offset + raw - self.baseline


@dataclass
class _Entry:
    provider: MeterProvider
    reader: PullReader
    meter: Any
    # instrument name -> attrs -> value, for this cycle
    values: dict[str, dict[Attrs, float]] = field(default_factory=lambda: defaultdict(dict))
    counters: dict[tuple[str, Attrs], _Counter] = field(default_factory=dict)
    instruments: set[str] = field(default_factory=set)
    baseline_new: bool = True  # take first values as baseline (only for resources present at start)
    retiring: bool = False


class MetricPipeline:
    """Owns the per-resource providers and the one exporter."""

    def __init__(self, exporter: MetricExporter, resource_for: Callable[[Hashable], Resource]) -> None:
        self._exporter = exporter
        self._resource_for = resource_for
        self._entries: dict[Hashable, _Entry] = {}
        self._first_cycle = True
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: Hashable) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            reader = PullReader(self._exporter)
            provider = MeterProvider(metric_readers=[reader], resource=self._resource_for(key), shutdown_on_exit=False)
            entry = _Entry(provider, reader, provider.get_meter(SCOPE, __version__), baseline_new=self._first_cycle)
            self._entries[key] = entry
        return entry

    def _instrument(self, entry: _Entry, spec: InstrumentSpec) -> None:
        name = spec.name

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, dict(a)) for a, v in entry.values.get(name, {}).items()]

        create = {
            InstrumentKind.COUNTER: entry.meter.create_observable_counter,
            InstrumentKind.UPDOWN: entry.meter.create_observable_up_down_counter,
            InstrumentKind.GAUGE: entry.meter.create_observable_gauge,
        }[spec.kind]
        create(name, callbacks=[callback], unit=spec.unit, description=spec.description)
        entry.instruments.add(name)

    def update(self, samples_by_key: dict[Hashable, list[Sample]], live: Iterable[Hashable]) -> None:
        """Store this cycle's samples. Keys not in ``live`` are collected once more, then released."""
        with self._lock:
            live = set(live)
            for key, entry in self._entries.items():
                if key not in live:
                    entry.retiring = True
            for key, samples in samples_by_key.items():
                if key not in live:
                    continue
                entry = self._entry(key)
                entry.retiring = False
                entry.values.clear()
                for s in samples:
                    spec = s.instrument
                    if spec.name not in entry.instruments:
                        self._instrument(entry, spec)
                    value = s.value
                    if spec.kind is InstrumentKind.COUNTER:
                        ck = (spec.name, s.attributes)
                        c = entry.counters.get(ck)
                        if c is None:
                            c = entry.counters[ck] = _Counter(value if entry.baseline_new else 0, value)
                        value = c.update(value)
                    entry.values[spec.name][s.attributes] = value
                entry.baseline_new = False
            self._first_cycle = False

    def collect(self) -> MetricsData:
        """Collect every resource; release the ones that were collected for the last time."""
        with self._lock:
            rms = []
            for key in list(self._entries):
                entry = self._entries[key]
                data = entry.reader.take()
                if data is not None:
                    rms.extend(data.resource_metrics)
                if entry.retiring:
                    entry.provider.shutdown()
                    del self._entries[key]
            return MetricsData(resource_metrics=rms)

    def export(self) -> bool:
        data = self.collect()
        if not data.resource_metrics:
            return True
        try:
            result = self._exporter.export(data)
        except Exception as exc:  # an exporter bug must not stop collection
            log.error("metric export raised %s: %s", type(exc).__name__, exc)
            return False
        if result is not MetricExportResult.SUCCESS:
            log.warning("metric export failed (%d resources); cumulative totals go with the next export",
                        len(data.resource_metrics))
            return False
        return True

    def shutdown(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                entry.provider.shutdown()
            self._entries.clear()
        self._exporter.shutdown()
