# SPDX-License-Identifier: Apache-2.0
"""The metric pipeline: one resource per key, baselines, final export of a removed key, temporality."""

import threading

from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.probe import Sample
from otel_kubeskoop.telemetry import instruments as I
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from tests.helpers import CaptureExporter, points, resource_keys

NOPORTS = I.BY_NAME["kubeskoop.udp.noports"]
CURREST = I.BY_NAME["kubeskoop.tcp.currestab"]


def resource_for(key):
    return Resource({"key": str(key)})


def value(data, name, key, attrs=()):
    pts = points(data, name)
    return pts[((("key", str(key)),), tuple(sorted(attrs)))][0]


def test_each_key_is_its_own_resource_with_its_own_values():
    exp = CaptureExporter()
    p = MetricPipeline(exp, resource_for)
    p.update({"node": [Sample(CURREST, 3)], 11: [Sample(NOPORTS, 5, 11)], 12: [Sample(NOPORTS, 9, 12)]}, ["node", 11, 12])
    p.update({"node": [Sample(CURREST, 4)], 11: [Sample(NOPORTS, 8, 11)], 12: [Sample(NOPORTS, 9, 12)]}, ["node", 11, 12])
    assert p.export()
    data = exp.exports[-1]
    assert sorted(resource_keys(data, "key")) == ["11", "12", "node"]
    # Counters present at the first cycle are reported as the increase since then.
    assert value(data, NOPORTS.name, 11) == 3
    assert value(data, NOPORTS.name, 12) == 0
    # Up-down counters are levels, reported as read.
    assert value(data, CURREST.name, "node") == 4
    assert len(exp.exports) == 1  # one export call for all resources


def test_series_appearing_later_count_their_whole_value():
    exp = CaptureExporter()
    p = MetricPipeline(exp, resource_for)
    p.update({11: [Sample(NOPORTS, 5, 11)]}, [11])
    p.export()
    p.update({11: [Sample(NOPORTS, 5, 11)], 13: [Sample(NOPORTS, 2, 13)]}, [11, 13])
    p.export()
    assert value(exp.exports[-1], NOPORTS.name, 13) == 2
    assert value(exp.exports[-1], NOPORTS.name, 11) == 0


def test_counter_going_backwards_stays_monotonic():
    exp = CaptureExporter()
    p = MetricPipeline(exp, resource_for)
    p.update({1: [Sample(NOPORTS, 100, 1)]}, [1])
    for raw in (110, 3, 10):  # +10, then the kernel counter restarted at 0 and reached 3, then 10
        p.update({1: [Sample(NOPORTS, raw, 1)]}, [1])
        p.export()
    assert [value(d, NOPORTS.name, 1) for d in exp.exports] == [10, 13, 20]


def test_removed_key_is_exported_once_more_then_released():
    exp = CaptureExporter()
    p = MetricPipeline(exp, resource_for)
    p.update({1: [Sample(NOPORTS, 1, 1)], 2: [Sample(NOPORTS, 1, 2)]}, [1, 2])
    p.update({1: [Sample(NOPORTS, 4, 1)], 2: [Sample(NOPORTS, 7, 2)]}, [1, 2])
    p.export()
    p.update({1: [Sample(NOPORTS, 5, 1)]}, [1])  # 2 is gone
    p.export()
    assert sorted(resource_keys(exp.exports[-1], "key")) == ["1", "2"]
    assert value(exp.exports[-1], NOPORTS.name, 2) == 6  # its last values, once more
    assert len(p) == 1
    p.update({1: [Sample(NOPORTS, 6, 1)]}, [1])
    p.export()
    assert resource_keys(exp.exports[-1], "key") == ["1"]


def test_cumulative_start_time_is_stable_and_delta_is_honoured():
    cum, delta = CaptureExporter(), CaptureExporter(delta=True)
    for exp in (cum, delta):
        p = MetricPipeline(exp, resource_for)
        for raw in (10, 15, 22):
            p.update({1: [Sample(NOPORTS, raw, 1)]}, [1])
            p.export()
    c = [points(d, NOPORTS.name) for d in cum.exports]
    starts = {next(iter(x.values()))[1] for x in c}
    assert len(starts) == 1
    assert next(iter(c[-1].values()))[2] is AggregationTemporality.CUMULATIVE
    d = [next(iter(points(x, NOPORTS.name).values())) for x in delta.exports]
    assert [v for v, _, _ in d][1:] == [5, 7] and d[-1][2] is AggregationTemporality.DELTA


def test_export_failure_is_reported_and_no_threads_are_started():
    before = threading.active_count()
    exp = CaptureExporter(fail=True)
    p = MetricPipeline(exp, resource_for)
    for key in range(50):
        p.update({key: [Sample(NOPORTS, 1, key)]}, list(range(50)))
    assert not p.export()
    assert threading.active_count() == before
