# SPDX-License-Identifier: Apache-2.0
"""The metric pipeline: one resource per key, baselines, final export of a removed key, temporality,
request size; checked on the OTLP messages it sends."""

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from otel_kubeskoop.identity.keys import NODE, NetnsKey
from otel_kubeskoop.probe import Histogram, Sample, log2_bounds
from otel_kubeskoop.probes import netdev, tcp, udp
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import InstrumentKind, InstrumentSpec
from otel_kubeskoop.telemetry.pipeline import DELTA, MetricPipeline, temporality_from_env
from tests.helpers import MemoryExporter, Resources, points, resource_values
from tests.otlp_receiver import decode_attributes

NOPORTS = next(i for i in udp.INSTRUMENTS if i.key == "NoPorts")
CURREST = next(i for i in tcp.INSTRUMENTS if i.key == "CurrEstab")
RXBYTES = next(i for i in netdev.INSTRUMENTS if i.key == "rx_bytes")
DURATION = I.AGENT_PROBE_DURATION
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


K = NetnsKey


def resource_for(key):
    return {"key": "node" if key == NODE else str(key.inode)}


def value(request, name, key, attrs=()):
    return points(request, name)[((("key", str(key)),), tuple(sorted(attrs)))]["value"]


def pipeline(**kw):
    exp = MemoryExporter()
    return MetricPipeline(exp, Resources(resource_for), **kw), exp


def test_each_key_is_its_own_resource_with_its_own_values():
    p, exp = pipeline()
    p.update({NODE: [Sample(CURREST, 3)], K(11): [Sample(NOPORTS, 5, 11)], K(12): [Sample(NOPORTS, 9, 12)]}, [NODE, K(11), K(12)])
    p.update({NODE: [Sample(CURREST, 4), Sample(DURATION, 0.25, None, (("kubeskoop.probe", "tcp"),))],
              K(11): [Sample(NOPORTS, 8, 11)], K(12): [Sample(NOPORTS, 9, 12)]}, [NODE, K(11), K(12)])
    assert p.export()
    (req,) = exp.requests  # one request carries every resource
    assert sorted(resource_values(req, "key")) == ["11", "12", "node"]
    # Counters present at the first cycle are reported as the increase since then.
    assert value(req, NOPORTS.name, 11) == 3
    assert value(req, NOPORTS.name, 12) == 0
    # Up-down counters are levels as read; gauges keep floats.
    assert value(req, CURREST.name, "node") == 4
    assert value(req, DURATION.name, "node", (("kubeskoop.probe", "tcp"),)) == 0.25
    pts = points(req, NOPORTS.name)
    assert all(p["monotonic"] and p["temporality"] == CUMULATIVE and p["unit"] == "{datagram}" for p in pts.values())
    assert next(iter(points(req, CURREST.name).values()))["monotonic"] is False
    assert next(iter(points(req, DURATION.name).values()))["temporality"] is None  # a gauge


def test_series_appearing_later_count_their_whole_value():
    p, exp = pipeline()
    p.update({K(11): [Sample(NOPORTS, 5, 11)]}, [K(11)])
    p.export()
    p.update({K(11): [Sample(NOPORTS, 5, 11)], K(13): [Sample(NOPORTS, 2, 13)]}, [K(11), K(13)])
    p.export()
    assert value(exp.requests[-1], NOPORTS.name, 13) == 2
    assert value(exp.requests[-1], NOPORTS.name, 11) == 0


def test_counter_going_backwards_stays_monotonic():
    p, exp = pipeline()
    p.update({K(1): [Sample(NOPORTS, 100, 1)]}, [K(1)])
    for raw in (110, 3, 10):  # +10, then the kernel counter restarted at 0 and reached 3, then 10
        p.update({K(1): [Sample(NOPORTS, raw, 1)]}, [K(1)])
        p.export()
    assert [value(r, NOPORTS.name, 1) for r in exp.requests] == [10, 13, 20]


def test_removed_key_is_exported_once_more_then_released():
    p, exp = pipeline()
    p.update({K(1): [Sample(NOPORTS, 1, 1)], K(2): [Sample(NOPORTS, 1, 2)]}, [K(1), K(2)])
    p.update({K(1): [Sample(NOPORTS, 4, 1)], K(2): [Sample(NOPORTS, 7, 2)]}, [K(1), K(2)])
    p.export()
    p.update({K(1): [Sample(NOPORTS, 5, 1)]}, [K(1)])  # 2 is gone
    p.export()
    assert sorted(resource_values(exp.requests[-1], "key")) == ["1", "2"]
    assert value(exp.requests[-1], NOPORTS.name, 2) == 6  # its last values, once more
    assert len(p) == 1
    p.update({K(1): [Sample(NOPORTS, 6, 1)]}, [K(1)])
    p.export()
    assert resource_values(exp.requests[-1], "key") == ["1"]


def test_a_series_that_disappears_from_a_live_resource_is_dropped_and_the_rest_keep_counting():
    p, exp = pipeline()
    eth0, veth = (("network.interface.name", "eth0"),), (("network.interface.name", "veth1"),)
    p.update({K(1): [Sample(RXBYTES, 10, 1, eth0), Sample(RXBYTES, 50, 1, veth), Sample(CURREST, 2, 1)]}, [K(1)])
    p.update({K(1): [Sample(RXBYTES, 15, 1, eth0), Sample(CURREST, 3, 1)]}, [K(1)])  # veth1 deleted
    p.update({K(1): [Sample(RXBYTES, 18, 1, eth0), Sample(CURREST, 1, 1)]}, [K(1)])
    p.export()
    pts = points(exp.requests[-1], RXBYTES.name)
    assert list(pts.values())[0]["value"] == 8 and len(pts) == 1
    assert value(exp.requests[-1], CURREST.name, 1) == 1
    p.update({K(1): [Sample(CURREST, 5, 1)]}, [K(1)])  # rxbytes gone entirely: the metric goes too
    p.export()
    assert points(exp.requests[-1], RXBYTES.name) == {}
    assert value(exp.requests[-1], CURREST.name, 1) == 5


def test_cumulative_start_time_is_stable_and_delta_is_honoured():
    cum, cexp = pipeline()
    delta, dexp = pipeline(temporality=DELTA)
    for raw in (10, 15, 22):
        for p in (cum, delta):
            p.update({K(1): [Sample(NOPORTS, raw, 1), Sample(CURREST, raw, 1)]}, [K(1)])
            p.export()
    c = [next(iter(points(r, NOPORTS.name).values())) for r in cexp.requests]
    assert len({x["start"] for x in c}) == 1 and [x["value"] for x in c] == [0, 5, 12]
    d = [next(iter(points(r, NOPORTS.name).values())) for r in dexp.requests]
    assert [x["value"] for x in d] == [0, 5, 7]
    assert d[-1]["temporality"] == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    assert d[2]["start"] == d[1]["time"], "a delta point starts where the previous one ended"
    u = [next(iter(points(r, CURREST.name).values())) for r in dexp.requests]
    assert u[-1]["temporality"] == CUMULATIVE and u[-1]["value"] == 22, "up-down counters stay cumulative"


def test_temporality_env():
    assert temporality_from_env({}) == CUMULATIVE
    assert temporality_from_env({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "DELTA"}) == DELTA
    assert temporality_from_env({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}) == CUMULATIVE


def test_requests_are_cut_at_max_points_by_whole_resources():
    p, exp = pipeline(max_points=5)
    samples = {K(k): [Sample(NOPORTS, 1, k), Sample(CURREST, 1, k)] for k in range(7)}  # 2 points each
    p.update(samples, list(samples))
    assert p.export()
    assert [len(r.resource_metrics) for r in exp.requests] == [2, 2, 2, 1]


def test_export_failure_is_reported():
    exp = MemoryExporter(fail=True)
    p = MetricPipeline(exp, Resources(resource_for))
    p.update({K(1): [Sample(NOPORTS, 1, 1)]}, [K(1)])
    assert not p.export()
    p.shutdown()
    assert exp.shut


def test_reattributed_key_exports_old_resource_once_more_and_keeps_counting_under_the_new_one():
    names = {K(1): "netns"}
    exp = MemoryExporter()
    directory = Resources(lambda key: {"key": str(key.inode), "who": names[key]})
    p = MetricPipeline(exp, directory)
    p.update({K(1): [Sample(NOPORTS, 100, 1), Sample(CURREST, 2, 1)]}, [K(1)])  # baseline 100
    p.update({K(1): [Sample(NOPORTS, 104, 1), Sample(CURREST, 2, 1)]}, [K(1)])
    p.export()
    names[K(1)] = "pod-a"  # metadata arrived: the directory has a new resource for the key
    directory.rebuild(K(1))
    p.update({K(1): [Sample(NOPORTS, 110, 1), Sample(CURREST, 3, 1)]}, [K(1)])
    p.export()
    req = exp.requests[-1]
    who = resource_values(req, "who")
    assert who == ["netns", "pod-a"]  # the old resource once more, then the new one
    pts = points(req, NOPORTS.name)
    by_who = {dict(k[0])["who"]: v for k, v in pts.items()}
    assert by_who["netns"]["value"] == 4 and by_who["pod-a"]["value"] == 10
    assert by_who["pod-a"]["start"] == by_who["netns"]["start"]
    p.update({K(1): [Sample(NOPORTS, 111, 1), Sample(CURREST, 3, 1)]}, [K(1)])
    p.export()
    assert resource_values(exp.requests[-1], "who") == ["pod-a"]
    assert {dict(k[0])["who"]: v["value"] for k, v in points(exp.requests[-1], NOPORTS.name).items()} == {"pod-a": 11}
    assert len(p) == 1


LATENCY = InstrumentSpec("kubeskoop.test.latency", InstrumentKind.HISTOGRAM, "s", "test latency")


def hist_point(request, key=1):
    (rm,) = [rm for rm in request.resource_metrics if decode_attributes(rm.resource.attributes)["key"] == str(key)]
    (metric,) = [m for m in rm.scope_metrics[0].metrics if m.name == LATENCY.name]
    (point,) = metric.histogram.data_points
    return metric, point


def test_kernel_histograms_are_reported_as_increases_per_bucket():
    p, exp = pipeline()
    bounds = log2_bounds(1e-6, 4)  # 2us, 4us, 8us, then open-ended
    assert bounds == (2e-6, 4e-6, 8e-6)
    p.update({K(1): [Sample(LATENCY, Histogram(bounds, (5, 1, 0, 0), 0.000009), 1)]}, [K(1)])  # baseline
    p.update({K(1): [Sample(LATENCY, Histogram(bounds, (7, 1, 3, 1), 0.000049), 1)]}, [K(1)])
    p.export()
    metric, point = hist_point(exp.requests[-1])
    assert metric.histogram.aggregation_temporality == CUMULATIVE
    assert list(point.explicit_bounds) == list(bounds)
    assert list(point.bucket_counts) == [2, 0, 3, 1] and point.count == 6
    assert abs(point.sum - 0.00004) < 1e-12
    # The kernel map was recreated (counts restarted): the series continues from where it was.
    p.update({K(1): [Sample(LATENCY, Histogram(bounds, (1, 0, 0, 0), 0.000001), 1)]}, [K(1)])
    p.export()
    _, point = hist_point(exp.requests[-1])
    assert list(point.bucket_counts) == [3, 0, 3, 1] and point.count == 7


def test_delta_histograms():
    p, exp = pipeline(temporality=DELTA)
    bounds = log2_bounds(1e-6, 3)
    for counts in ((1, 0, 0), (4, 2, 0), (4, 2, 5)):
        p.update({K(1): [Sample(LATENCY, Histogram(bounds, counts), 1)]}, [K(1)])
        p.export()
    got = [list(hist_point(r)[1].bucket_counts) for r in exp.requests]
    assert got == [[0, 0, 0], [3, 2, 0], [0, 0, 5]]
    metric, point = hist_point(exp.requests[-1])
    assert metric.histogram.aggregation_temporality == DELTA and not point.HasField("sum")


def test_delta_carries_unsent_increases_through_an_outage_so_nothing_is_lost():
    """Finding 8 of issue 11: the point moved on before the export's result was known."""
    p, exp = pipeline(temporality=DELTA)
    bounds = log2_bounds(1e-6, 3)
    raws = [(10, (1, 0, 0)), (15, (2, 0, 0)), (22, (2, 3, 0)), (30, (2, 3, 4)), (31, (5, 3, 4))]
    delivered = []
    for i, (raw, counts) in enumerate(raws):
        exp.fail = i in (1, 2)  # an outage over two exports
        p.update({K(1): [Sample(NOPORTS, raw, 1), Sample(LATENCY, Histogram(bounds, counts), 1)]}, [K(1)])
        if p.export():
            delivered.append(exp.requests[-1])
    sums = [next(iter(points(r, NOPORTS.name).values())) for r in delivered]
    assert [x["value"] for x in sums] == [0, 20, 1], "the outage's increase arrives with the first export after it"
    assert sum(x["value"] for x in sums) == 31 - 10
    assert sums[1]["start"] == sums[0]["time"] and sums[2]["start"] == sums[1]["time"], "no gap, no overlap"
    hists = [list(hist_point(r)[1].bucket_counts) for r in delivered]
    assert hists == [[0, 0, 0], [1, 3, 4], [3, 0, 0]]


def test_a_delivered_delta_is_not_sent_again_without_new_data():
    p, exp = pipeline(temporality=DELTA)
    for raw in (10, 14):
        p.update({K(1): [Sample(NOPORTS, raw, 1)]}, [K(1)])
        assert p.export()
    assert p.export()  # the final export at shutdown, no cycle since the last one
    got = [next(iter(points(r, NOPORTS.name).values()))["value"] for r in exp.requests]
    assert got == [0, 4, 0]


def test_a_removed_resource_whose_last_export_failed_is_sent_with_the_next():
    p, exp = pipeline()
    p.update({K(1): [Sample(NOPORTS, 1, 1)], K(2): [Sample(NOPORTS, 2, 2)]}, [K(1), K(2)])
    p.update({K(1): [Sample(NOPORTS, 3, 1)]}, [K(1)])
    exp.fail = True
    assert not p.export()
    exp.fail = False
    assert p.export()
    assert {dict(k[0])["key"] for k in points(exp.requests[-1], NOPORTS.name)} == {"1", "2"}
    assert p.export()
    assert {dict(k[0])["key"] for k in points(exp.requests[-1], NOPORTS.name)} == {"1"}


def test_resources_and_series_over_their_caps_are_refused_and_counted():
    p, exp = pipeline(max_resources=2, max_series=3)
    p.update({K(k): [Sample(NOPORTS, 1, k), Sample(CURREST, 1, k)] for k in range(3)}, [K(k) for k in range(3)])
    assert p.refused == {"resources": 1, "series": 1} and len(p) == 2
    p.update({K(k): [Sample(NOPORTS, 1, k), Sample(CURREST, 1, k)] for k in range(3)}, [K(k) for k in range(3)])
    assert p.overflow == {"resources": 2, "series": 2}
    p.export()
    assert sum(len(points(r, n)) for r in exp.requests for n in (NOPORTS.name, CURREST.name)) == 3
