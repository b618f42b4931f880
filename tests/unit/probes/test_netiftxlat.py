# SPDX-License-Identifier: Apache-2.0
"""netiftxlat without a kernel: records recorded on Linux 6.18 decode to their events; histogram
entries become OTel histograms (kernel buckets as bounds) and upstream's counters; a key in two
slots is one series; vanished namespaces are pruned; in-flight evictions are the kernel's count;
the attach plan goes tracepoint first."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import choose
from otel_kubeskoop.bpf.generated import netiftxlat as contract
from otel_kubeskoop.bpf.generated.common import InflightStat
from otel_kubeskoop.bpf.generated.netiftxlat import NetiftxlatEvent, NetiftxlatKey, NetiftxlatValue
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import member_plans
from otel_kubeskoop.probe import Cycle, Histogram, Kind, ProbeContext, log2_bounds
from otel_kubeskoop.probes import netiftxlat
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.bpfdumps import as_json, dumps, read
from tests.unit.probes.latencyfakes import Features, hist, latency_object, samples_by_key

PLANS = member_plans(contract.OBJECT)

A_NS, B_NS, GONE_NS = 4026532281, 4026532282, 4026532999
IF, STAGE = "network.interface.name", "kubeskoop.latency.stage"


@pytest.mark.parametrize("path", dumps("netiftxlat"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(NetiftxlatEvent)
    assert records.to_dict(records.decode(NetiftxlatEvent, dump.raw)) == dump.record
    assert as_json(netiftxlat.decode_netiftxlat(dump.raw, 0)) == dump.event


def test_qdisc_event_has_the_packet_and_xmit_event_the_stages() -> None:
    qdisc = netiftxlat.decode_netiftxlat(read(dumps("netiftxlat_qdisc")[0]).raw, 10)
    got = dict(qdisc.attributes)
    assert (qdisc.name, qdisc.upstream_type) == ("kubeskoop.netiftxlat.qdisc", "NETIFTXLAT_QDISC")
    assert got[STAGE] == "qdisc" and got["kubeskoop.latency"] == got["kubeskoop.latency.qdisc"]
    assert got["network.transport"] == "udp" and got["destination.port"] == 9999
    assert "kubeskoop.latency.xmit" not in got
    assert qdisc.netns and qdisc.timestamp_ns == read(dumps("netiftxlat_qdisc")[0]).record["hdr"]["ts_ns"] + 10

    xmit = netiftxlat.decode_netiftxlat(read(dumps("netiftxlat_xmit")[0]).raw)
    got = dict(xmit.attributes)
    assert (xmit.name, xmit.upstream_type) == ("kubeskoop.netiftxlat.xmit", "NETIFTXLAT_XMIT")
    assert got[STAGE] == "xmit" and got["kubeskoop.latency"] == got["kubeskoop.latency.xmit"]
    assert "kubeskoop.latency.qdisc" in got
    assert "source.address" not in got  # the packet may be freed by the time the driver returns


def test_wrong_size_and_unknown_stage_are_decode_errors() -> None:
    raw = read(dumps("netiftxlat")[0]).raw
    with pytest.raises(DecodeError, match="record of 120 bytes, expected 112"):
        netiftxlat.decode_netiftxlat(raw + bytes(8))
    rec = NetiftxlatEvent.from_buffer_copy(raw)
    rec.hdr.type = 3
    with pytest.raises(DecodeError, match="unknown event type 3"):
        netiftxlat.decode_netiftxlat(bytes(rec))


def value(h, ifname: bytes = b"eth0") -> NetiftxlatValue:
    v = NetiftxlatValue()
    v.hist = h
    v.ifname = ifname
    return v


def probe_with(entries, namespaces=(A_NS, B_NS), **kwargs) -> netiftxlat.NetiftxlatProbe:
    ctx = ProbeContext(name="netiftxlat", cycle=Cycle(namespaces={n: object() for n in namespaces}),
                       events_enabled=kwargs.pop("events", False))
    probe = netiftxlat.NetiftxlatProbe(None, ctx)
    probe.bpf.obj = latency_object(entries, **kwargs)
    return probe


def test_histograms_and_upstream_counters() -> None:
    qdisc = hist({20: 3, 26: 2}, sum_ns=3 * 1_500_000 + 2 * 100_000_000, slow=(1, 0))
    xmit = hist({10: 5}, sum_ns=5 * 1500)
    probe = probe_with([
        (NetiftxlatKey(A_NS, 1, 2, 1), value(qdisc)),
        (NetiftxlatKey(A_NS, 1, 2, 2), value(xmit)),
        (NetiftxlatKey(B_NS, 1, 7, 1), value(hist({3: 1}), b"")),
    ])
    got = samples_by_key(probe.collect())
    h = got[("kubeskoop.netiftxlat.duration", A_NS, ((IF, "eth0"), (STAGE, "qdisc")))]
    assert h == Histogram(BOUNDS, tuple(qdisc.slots), pytest.approx(0.2045))
    assert h.bounds == log2_bounds(1e-9, 36) and len(h.counts) == len(h.bounds) + 1
    assert h.bounds[19] == pytest.approx(1.048576e-3)  # slot 20 holds [1.05 ms, 2.10 ms)
    assert sum(got[("kubeskoop.netiftxlat.duration", A_NS, ((IF, "eth0"), (STAGE, "xmit")))].counts) == 5
    assert got[("kubeskoop.netiftxlat.qdiscslow100ms", A_NS, ((IF, "eth0"),))] == 1
    assert got[("kubeskoop.netiftxlat.netdevslow100ms", A_NS, ((IF, "eth0"),))] == 0
    # A name the kernel could not read: the index.
    assert ("kubeskoop.netiftxlat.duration", B_NS, ((IF, "if7"), (STAGE, "qdisc"))) in got
    probe_attr = ("kubeskoop.probe", "netiftxlat")
    assert got[("kubeskoop.agent.bpf.map.full", None, (probe_attr, ("kubeskoop.bpf.map", "hists")))] == 0
    assert ("kubeskoop.agent.events.lost", None,
            (probe_attr, ("kubeskoop.loss.reason", "rate_limited"))) not in got  # no events asked


def test_a_key_two_cpus_added_at_once_is_one_series() -> None:
    # Two slots hold one key (CPUs that added it at the same instant): one histogram, the sum.
    key = NetiftxlatKey(A_NS, 1, 2, 1)
    probe = probe_with([(key, value(hist({4: 2}, sum_ns=40, slow=(1, 0)))),
                        (NetiftxlatKey(A_NS, 1, 2, 2), value(hist({5: 1}))),
                        (key, value(hist({4: 1, 9: 3}, sum_ns=7, slow=(2, 0))))])
    got = samples_by_key(probe.collect())
    h = got[("kubeskoop.netiftxlat.duration", A_NS, ((IF, "eth0"), (STAGE, "qdisc")))]
    assert h.counts[4] == 3 and h.counts[9] == 3 and sum(h.counts) == 6
    assert h.sum == pytest.approx(47e-9)
    assert got[("kubeskoop.netiftxlat.qdiscslow100ms", A_NS, ((IF, "eth0"),))] == 3


def test_freed_slots_are_found_no_more() -> None:
    probe = probe_with([(NetiftxlatKey(GONE_NS, 1, 2, 1), value(hist({1: 1}))),
                        (NetiftxlatKey(GONE_NS, 1, 2, 1), value(hist({1: 1}))),
                        (NetiftxlatKey(A_NS, 1, 2, 1), value(hist({1: 1})))])
    probe.collect()
    probe.collect()
    hists = probe.bpf.obj.maps["hists"]
    assert [k.netns for k in hists.deleted] == [GONE_NS, GONE_NS]  # both of its slots
    assert [k.netns for k, _ in probe.hists.read()] == [A_NS]


def test_vanished_namespaces_are_reported_no_more_and_deleted_the_next_time() -> None:
    probe = probe_with([(NetiftxlatKey(A_NS, 1, 2, 1), value(hist({1: 1}))),
                        (NetiftxlatKey(GONE_NS, 1, 2, 1), value(hist({1: 1})))])
    hists = probe.bpf.obj.maps["hists"]
    first = samples_by_key(probe.collect())
    assert not [k for k in first if k[1] == GONE_NS]
    assert not hists.deleted  # one miss: a namespace the scan has not seen yet is kept
    probe.collect()
    assert [k.netns for k in hists.deleted] == [GONE_NS]
    assert [k.netns for k, _ in hists.items()] == [A_NS]


def test_an_inode_given_to_a_new_namespace_starts_from_zero() -> None:
    old = NetiftxlatKey(A_NS, 5, 2, 1)  # a dead namespace's, whose inode the kernel reused
    new = NetiftxlatKey(A_NS, 9, 2, 1)
    probe = probe_with([(old, value(hist({1: 50}))), (new, value(hist({1: 2})))])
    got = samples_by_key(probe.collect())
    assert sum(got[("kubeskoop.netiftxlat.duration", A_NS, ((IF, "eth0"), (STAGE, "qdisc")))].counts) == 2
    assert [k.netns_cookie for k in probe.bpf.obj.maps["hists"].deleted] == [5]


def test_nothing_is_pruned_before_the_first_scan() -> None:
    probe = probe_with([(NetiftxlatKey(GONE_NS, 1, 2, 1), value(hist({1: 1})))], namespaces=())
    for _ in range(3):
        assert ("kubeskoop.netiftxlat.duration", GONE_NS, ((IF, "eth0"), (STAGE, "qdisc"))) in \
            samples_by_key(probe.collect())
    assert not probe.bpf.obj.maps["hists"].deleted


def test_evictions_are_the_kernels_inflight_count() -> None:
    stats = {InflightStat.INFLIGHT_STARTED: 1000, InflightStat.INFLIGHT_ENDED: 900,
             InflightStat.INFLIGHT_DISCARDED: 40, InflightStat.INFLIGHT_UNMATCHED: 7,
             InflightStat.INFLIGHT_EVICTED: 40}
    probe = probe_with([], inflight=stats, losses=(1, 9), events=True)
    got = samples_by_key(probe.collect())
    probe_attr = ("kubeskoop.probe", "netiftxlat")
    assert got[("kubeskoop.agent.bpf.inflight.evicted", None, (probe_attr, ("kubeskoop.bpf.map", "skbs")))] == 40
    assert got[("kubeskoop.agent.events.lost", None, (probe_attr, ("kubeskoop.loss.reason", "rate_limited")))] == 9
    assert got[("kubeskoop.agent.events.lost", None, (probe_attr, ("kubeskoop.loss.reason", "ring_buffer_full")))] == 1
    assert probe.hists.inflight()["unmatched"] == 7
    assert probe.hists.evicted() == 40


def test_attach_plans_go_tracepoint_first() -> None:
    order = ["tp_btf", "tracepoint", "fentry", "kprobe"]
    for plan in PLANS:
        kinds = [c.point.kind.value for c in plan.candidates]
        assert kinds == sorted(kinds, key=order.index), plan.hook
        assert kinds[0] == "tp_btf" and "tracepoint" in kinds, plan.hook
    btf = Features(*(c.point.section for p in PLANS for c in p.candidates))
    assert {p.hook: choose(p, btf).point.section for p in PLANS}["queue"] == "tp_btf/net_dev_queue"
    classic = Features(*(c.point.section for p in PLANS for c in p.candidates
                         if c.point.kind == "tracepoint"))
    assert all(choose(p, classic).point.kind == "tracepoint" for p in PLANS)


def test_args_and_spec() -> None:
    args = netiftxlat.NetiftxlatArgs()
    assert (args.threshold_ms, args.threshold_ns) == (100.0, 100_000_000)
    assert netiftxlat.NetiftxlatArgs.model_validate({"thresholdMs": 0.5}).threshold_ns == 500_000
    with pytest.raises(ValueError):
        netiftxlat.NetiftxlatArgs.model_validate({"thresholdMs": 0})
    assert netiftxlat.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert {i.compat for i in netiftxlat.SPEC.instruments} == {
        None, "kubeskoop_netiftxlat_qdiscslow100ms", "kubeskoop_netiftxlat_netdevslow100ms"}
