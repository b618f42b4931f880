# SPDX-License-Identifier: Apache-2.0
"""flow without a kernel: the kernel map's keys as series attributes; cumulative totals across
reads, evictions and deletions; the per-namespace series cap and its overflow series; and what
the probe does with its TC attacher at stop, against a fake of the ``bpf.tc`` calls."""

from __future__ import annotations

import ctypes
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf.generated.flow import FlowKey, FlowValue
from otel_kubeskoop.bpf.tc_attach import Attacher, LeftAttached
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import flow
from tests.unit.bpf.tcfakes import FakeNs, FakeTC
from tests.unit.probes.bpfdumps import FakeMap, FakeObject
from tests.unit.probes.latencyfakes import samples_by_key

A_NS = 4026532281
DIR, OVERFLOW = "network.io.direction", "kubeskoop.flow.overflow"
INGRESS, EGRESS = 1, 2


def key(netns: int = A_NS, direction: int = EGRESS, protocol: int = 17, family: int = 2,
        src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 0, dport: int = 0,
        cookie: int = 1) -> bytes:
    k = FlowKey(netns=netns, netns_cookie=cookie, direction=direction, protocol=protocol,
                family=family, sport=sport, dport=dport)
    af = socket.AF_INET if family == 2 else socket.AF_INET6
    ctypes.memmove(k.saddr, socket.inet_pton(af, src), 4 if family == 2 else 16)
    ctypes.memmove(k.daddr, socket.inet_pton(af, dst), 4 if family == 2 else 16)
    return bytes(k)


def test_key_layout() -> None:
    assert flow._KEY.size == ctypes.sizeof(FlowKey) == 48
    assert flow._VALUE.size == ctypes.sizeof(FlowValue) == 16
    assert flow.key_netns(key(cookie=7)) == (A_NS, 7)


def test_attributes_ipv4_ipv6_ports() -> None:
    assert flow.flow_attributes(key(sport=40000, dport=53), ports=True) == (
        (DIR, "transmit"), ("network.type", "ipv4"), ("network.transport", "udp"),
        ("source.address", "10.0.0.1"), ("source.port", 40000),
        ("destination.address", "10.0.0.2"), ("destination.port", 53))
    assert flow.flow_attributes(key(sport=40000, dport=53), ports=False) == (
        (DIR, "transmit"), ("network.type", "ipv4"), ("network.transport", "udp"),
        ("source.address", "10.0.0.1"), ("destination.address", "10.0.0.2"))
    assert flow.flow_attributes(key(direction=INGRESS, protocol=58, family=10, src="fd00::1",
                                    dst="fd00::2"), ports=True) == (
        (DIR, "receive"), ("network.type", "ipv6"), ("network.transport", "ipv6-icmp"),
        ("source.address", "fd00::1"), ("destination.address", "fd00::2"))
    assert flow.overflow_attributes(key(direction=INGRESS)) == ((DIR, "receive"), (OVERFLOW, True))


def totals(table: flow.FlowTable, netns=(A_NS, 1)) -> dict[tuple[Any, ...], tuple[int, int]]:
    got = samples_by_key(table.samples(netns))
    out: dict[tuple[Any, ...], list[int]] = {}
    for (name, _, attrs), v in got.items():
        if name == "kubeskoop.flow.bytes":
            out.setdefault(attrs, [0, 0])[0] = v
        elif name == "kubeskoop.flow.packets":
            out.setdefault(attrs, [0, 0])[1] = v
    return {k: (b, p) for k, (b, p) in out.items()}


def test_totals_survive_evictions_and_restarts() -> None:
    table = flow.FlowTable(max_series=10, idle_seconds=300, ports=False)
    k1, k2 = key(sport=1), key(sport=2)  # one series without ports
    attrs = flow.flow_attributes(k1, ports=False)
    table.update([(k1, 1000, 10)], now=0)
    assert totals(table) == {attrs: (1000, 10)}
    table.update([(k1, 1500, 15), (k2, 100, 1)], now=1)
    assert totals(table) == {attrs: (1600, 16)}
    # k1 evicted by the LRU and inserted again between two reads: its new counts add whole.
    table.update([(k1, 40, 1), (k2, 100, 1)], now=2)
    assert totals(table) == {attrs: (1640, 17)}
    # k2 gone from the map (evicted): what it counted stays; k2 coming back counts from zero.
    table.update([(k1, 40, 1)], now=3)
    table.update([(k1, 40, 1), (k2, 7, 1)], now=4)
    assert totals(table) == {attrs: (1647, 18)}
    assert samples_by_key(table.samples((A_NS, 1)))[("kubeskoop.flow.overflow.flows", A_NS, ())] == 0


def test_series_cap_and_overflow() -> None:
    table = flow.FlowTable(max_series=2, idle_seconds=300, ports=True)
    rows = [(key(dport=p), 100, 1) for p in (1, 2, 3, 4)] + [(key(direction=INGRESS, dport=9), 5, 1)]
    table.update(rows, now=0)
    got = totals(table)
    overflow_out = ((DIR, "transmit"), (OVERFLOW, True))
    overflow_in = ((DIR, "receive"), (OVERFLOW, True))
    assert len(got) == 4 and got[overflow_out] == (200, 2) and got[overflow_in] == (5, 1)
    assert sum(b for b, _ in got.values()) == 405
    counts = samples_by_key(table.samples((A_NS, 1)))
    assert counts[("kubeskoop.flow.overflow.flows", A_NS, ())] == 3
    # Flows already in a series keep adding to it; new ones still overflow.
    table.update([(r[0], r[1] * 2, 2) for r in rows], now=1)
    assert totals(table)[overflow_out] == (400, 4)


def test_idle_keys_are_deleted_and_their_series_retired() -> None:
    table = flow.FlowTable(max_series=1, idle_seconds=10, ports=True)
    busy, quiet = key(dport=1), key(dport=2)
    table.update([(busy, 10, 1)], now=0)
    table.update([(busy, 10, 1), (quiet, 5, 1)], now=1)  # quiet overflows: the cap is 1
    assert table.update([(busy, 20, 2), (quiet, 5, 1)], now=10) == []
    assert set(table.update([(busy, 30, 3), (quiet, 5, 1)], now=11.5)) == {quiet}
    # busy goes quiet too: deleted from the kernel; its series retired (freeing the cap), the
    # overflow series kept.
    assert set(table.update([(busy, 30, 3)], now=30)) == {busy}
    assert table.update([], now=31) == []
    assert set(totals(table)) == {((DIR, "transmit"), (OVERFLOW, True))}
    table.update([(quiet, 1, 1)], now=32)
    assert flow.flow_attributes(quiet, ports=True) in totals(table)


class Attached:
    """An attacher whose every namespace has one interface attached."""

    def sync(self, namespaces: Any) -> list[BaseException]:
        return []

    def interfaces(self, netns: int) -> int:
        return 1 if netns == A_NS else 0


def test_an_inode_given_to_a_new_namespace_starts_from_zero() -> None:
    ctx = ProbeContext(name="flow", cycle=Cycle(namespaces={A_NS: FakeNs(A_NS, names=b"x\n")}))
    probe = flow.FlowProbe(flow.FlowArgs(), ctx)
    probe.attacher = Attached()  # type: ignore[assignment]
    old, new = key(cookie=3), key(cookie=4, dport=1)
    flows = FakeMap([(old, bytes(FlowValue(999, 9)))])
    probe.bpf.obj = FakeObject({"flows": flows, "flow_stats": FakeMap({0: 2})})
    probe.collect()
    flows.entries.append((new, bytes(FlowValue(10, 1))))
    got = samples_by_key(probe.collect())
    assert flows.deleted == [old]
    assert set(probe.table.namespaces) == {(A_NS, 4)}
    assert list(totals(probe.table, (A_NS, 4)).values()) == [(10, 1)]
    assert sum(v for (n, _, _), v in got.items() if n == "kubeskoop.flow.bytes") == 10


def test_args() -> None:
    args = flow.FlowArgs.model_validate({"interfaceName": "eth*", "enablePortInLabel": True})
    assert args.enable_port_in_label and args.host_match("eth0") and not args.host_match("veth0")
    assert flow.FlowArgs(interfaceName="eth0").host_match("eth0")
    assert not flow.FlowArgs(interfaceName="eth0").host_match("eth01")
    assert not flow.FlowArgs().host_match("eth0")  # no host interface by default
    assert (flow.FlowArgs().max_flows, flow.FlowArgs().max_series) == (65536, 1000)
    with pytest.raises(ValidationError):
        flow.FlowArgs.model_validate({"interfacename": "eth0", "bogus": 1})
    assert flow.SPEC.kinds == {Kind.METRICS}
    assert {i.compat for i in flow.SPEC.instruments if i.compat} == {
        "kubeskoop_flow_bytes", "kubeskoop_flow_packets"}


# --- the attacher at the probe's edges (the reconciler: tests/unit/bpf/test_tc_attach.py) ----


def test_stop_reports_filters_it_could_not_take_off_and_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tc = FakeTC(monkeypatch, flow.TC_PRIORITY)
    ctx = ProbeContext(name="flow", cycle=Cycle(namespaces={A_NS: FakeNs(A_NS)}))
    probe = flow.FlowProbe(flow.FlowArgs(), ctx)
    probe.attacher = Attacher("flow", flow.PROGRAMS, {"ingress": 21, "egress": 22},
                              {"ingress": 21, "egress": 22}, probe._wanted,
                              handle=21, priority=flow.TC_PRIORITY)
    assert probe.attacher.sync(ctx.cycle.namespaces, now=0) == []
    fake_tc.refuse_detach.add(3)
    probe.stop()
    (error,) = ctx.errors
    assert isinstance(error, LeftAttached) and (error.inode, error.names) == (A_NS, ("net1",))
    assert probe.attacher is not None and set(probe.attacher.state[A_NS].ifaces) == {"net1"}
    fake_tc.refuse_detach.clear()
    probe.stop()  # a second stop takes them off
    assert probe.attacher is None and fake_tc.of(3, 21) == {} and len(ctx.errors) == 1


def test_collect_reads_the_map_and_counts_evictions() -> None:
    ctx = ProbeContext(name="flow", cycle=Cycle(namespaces={A_NS: FakeNs(A_NS, names=b"x\n")}))
    probe = flow.FlowProbe(flow.FlowArgs(enablePortInLabel=True), ctx)

    probe.attacher = Attached()  # type: ignore[assignment]
    rows = [(key(dport=1), bytes(FlowValue(1042, 1))), (key(dport=2), bytes(FlowValue(84, 2)))]
    probe.bpf.obj = FakeObject({"flows": FakeMap(rows), "flow_stats": FakeMap({0: 10, 1: 3, 2: 5})})
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.flow.interfaces", A_NS, ())] == 1
    assert sum(v for (n, ns, _), v in got.items() if n == "kubeskoop.flow.bytes") == 1126
    probe_attr = ("kubeskoop.probe", "flow")
    assert got[("kubeskoop.agent.bpf.map.evicted", None, (probe_attr, ("kubeskoop.bpf.map", "flows")))] == 8
    assert got[("kubeskoop.agent.bpf.map.full", None, (probe_attr, ("kubeskoop.bpf.map", "flows")))] == 3
