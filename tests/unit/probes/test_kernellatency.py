# SPDX-License-Identifier: Apache-2.0
"""kernellatency without a kernel: records recorded on Linux 6.18 decode to their events; the
kernel's histograms become OTel histograms per direction and upstream's four counters (all four
counted, unlike upstream's never-incremented *100ms ones); the attach plans go tracepoint first."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import AttachPoint, choose
from otel_kubeskoop.bpf.generated import kernellatency as contract
from otel_kubeskoop.bpf.generated.common import InflightStat
from otel_kubeskoop.bpf.generated.kernellatency import KernellatencyEvent, KernellatencyKey
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import member_plans
from otel_kubeskoop.probe import Cycle, Histogram, Kind, ProbeContext
from otel_kubeskoop.probes import kernellatency
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.bpfdumps import Dump, as_json, dumps, read
from tests.unit.probes.latencyfakes import Features, hist, latency_object, samples_by_key

PLANS = member_plans(contract.OBJECT)

A_NS, B_NS = 4026532281, 4026532282
RX, TX = 1, 2
DIR = "network.io.direction"
PROBE = ("kubeskoop.probe", "kernellatency")


def points_of(dump: Dump) -> dict[int, tuple[str, str]]:
    kernel = json.loads(dump.path.read_text().partition("\n.\n")[2])["kernel"]
    return {int(k): (v[0], v[1]) for k, v in kernel["points"].items()}


@pytest.mark.parametrize("path", dumps("kernellatency"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(KernellatencyEvent)
    assert records.to_dict(records.decode(KernellatencyEvent, dump.raw)) == dump.record
    assert as_json(kernellatency.decode_kernellatency(dump.raw, points_of(dump), 0)) == dump.event


def test_receive_and_transmit_events() -> None:
    dump = read(dumps("kernellatency_rxslow")[0])
    event = kernellatency.decode_kernellatency(dump.raw, points_of(dump), 5)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.kernellatency.rxslow", "RXKERNEL_SLOW")
    assert event.timestamp_ns == dump.record["hdr"]["ts_ns"] + 5
    assert got[DIR] == "receive" and got["destination.port"] == 8080
    assert got["kubeskoop.packet.bytes"] == 152  # 100 bytes + TCP 32 + IP 20, from the IP header
    assert (got["kubeskoop.latency.start"], got["kubeskoop.latency.end"]) == (
        "tp_btf/netif_receive_skb", "tp_btf/tcp_probe")

    dump = read(dumps("kernellatency_txslow")[0])
    event = kernellatency.decode_kernellatency(dump.raw, points_of(dump))
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.kernellatency.txslow", "TXKERNEL_SLOW")
    assert got[DIR] == "transmit" and got["kubeskoop.latency"] > 0.2  # held for ARP
    assert got["kubeskoop.latency.start"] == kernellatency.TX_START
    assert got["network.interface.name"].startswith("ksk")


def test_wrong_size_unknown_direction_and_no_interface() -> None:
    raw = read(dumps("kernellatency")[0]).raw
    with pytest.raises(DecodeError, match="record of 80 bytes, expected 88"):
        kernellatency.decode_kernellatency(raw[:80], {})
    rec = KernellatencyEvent.from_buffer_copy(raw)
    rec.hdr.type = 9
    with pytest.raises(DecodeError, match="unknown event type 9"):
        kernellatency.decode_kernellatency(bytes(rec), {})
    rec.hdr.type, rec.ifname = TX, b""
    got = dict(kernellatency.decode_kernellatency(bytes(rec), {}).attributes)
    assert got["network.interface.name"] == f"if{rec.ifindex}"  # the index when the name is unknown
    assert got["kubeskoop.latency.start"] == "" and got["kubeskoop.latency.end"] == ""


def probe_with(entries, namespaces=(A_NS, B_NS), **kwargs) -> kernellatency.KernellatencyProbe:
    ctx = ProbeContext(name="kernellatency", cycle=Cycle(namespaces={n: object() for n in namespaces}),
                       events_enabled=kwargs.pop("events", False))
    probe = kernellatency.KernellatencyProbe(None, ctx)
    probe.bpf.obj = latency_object(entries, **kwargs)
    return probe


def test_histograms_per_direction_and_upstream_counters() -> None:
    rx = hist({14: 100, 24: 2, 27: 1}, sum_ns=100 * 20_000 + 2 * 20_000_000 + 150_000_000, slow=(3, 1))
    tx = hist({12: 50}, sum_ns=50 * 5000)
    probe = probe_with([(KernellatencyKey(A_NS, 1, RX), rx), (KernellatencyKey(B_NS, 1, TX), tx)])
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.kernellatency.duration", A_NS, ((DIR, "receive"),))] == Histogram(
        BOUNDS, tuple(rx.slots), pytest.approx(0.192))
    assert sum(got[("kubeskoop.kernellatency.duration", B_NS, ((DIR, "transmit"),))].counts) == 50
    assert got[("kubeskoop.kernellatency.rxslow", A_NS, ())] == 3
    assert got[("kubeskoop.kernellatency.rxslow100ms", A_NS, ())] == 1
    assert got[("kubeskoop.kernellatency.txslow", B_NS, ())] == 0
    assert got[("kubeskoop.kernellatency.txslow100ms", B_NS, ())] == 0
    assert ("kubeskoop.kernellatency.txslow", A_NS, ()) not in got  # no transmit measured in A


def test_inflight_evictions() -> None:
    stats = {InflightStat.INFLIGHT_STARTED: 10_000, InflightStat.INFLIGHT_REPLACED: 50,
             InflightStat.INFLIGHT_ENDED: 9000, InflightStat.INFLIGHT_DISCARDED: 900,
             InflightStat.INFLIGHT_EVICTED: 40}
    probe = probe_with([], inflight=stats)
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.agent.bpf.inflight.evicted", None, (PROBE, ("kubeskoop.bpf.map", "skbs")))] == 40


def test_attach_plans_go_tracepoint_first_with_function_fallbacks() -> None:
    order = ["tp_btf", "tracepoint", "fentry", "kprobe"]
    for plan in PLANS:
        kinds = [c.point.kind.value for c in plan.candidates]
        assert set(kinds) == set(order), plan.hook
        assert kinds == sorted(kinds, key=order.index)
    # A kernel with neither BTF nor tracepoints but kprobes: upstream's receive points.
    kprobes = Features(*(c.point.section for p in PLANS for c in p.candidates
                         if c.point.kind == "kprobe"))
    chosen = {p.hook: choose(p, kprobes).point for p in PLANS}
    assert chosen["rx"] == AttachPoint("kprobe", "ip_rcv")
    assert chosen["deliver"] == AttachPoint("kprobe", "tcp_rcv_established")
    assert chosen["free"] == AttachPoint("kprobe", "sk_skb_reason_drop")
    assert kernellatency.endpoints(chosen)[RX] == ("kprobe/ip_rcv", "kprobe/tcp_rcv_established")


def test_spec_and_args() -> None:
    spec = kernellatency.SPEC
    assert spec.kinds == {Kind.METRICS, Kind.EVENTS}
    assert spec.args().threshold_ns == 10_000_000  # upstream's 10 ms
    assert spec.args(thresholdMs=0.0001).threshold_ns == 100
    with pytest.raises(ValidationError):
        spec.args(thresholdMs=0)
    assert {i.compat for i in spec.instruments if i.compat} == {
        "kubeskoop_kernellatency_rxslow", "kubeskoop_kernellatency_rxslow100ms",
        "kubeskoop_kernellatency_txslow", "kubeskoop_kernellatency_txslow100ms"}
