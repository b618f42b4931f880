# SPDX-License-Identifier: Apache-2.0
"""flow without a kernel: the kernel map's keys as series attributes; cumulative totals across
reads, evictions and deletions; the per-namespace series cap and its overflow series; and the TC
attachment rules (stale filters replaced, others' filters and qdiscs left alone), against a fake
of the ``bpf.tc`` calls."""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf import tc
from otel_kubeskoop.bpf.generated.flow import FlowKey, FlowValue
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import flow
from tests.unit.probes.bpfdumps import FakeMap, FakeObject
from tests.unit.probes.latencyfakes import samples_by_key

A_NS, B_NS = 4026532281, 4026532282
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


# --- attachments, against a fake of the TC calls ---------------------------------------------


NET_DEV = (b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
           + b"".join(b"%s: " % n.encode() + b" 0" * 16 + b"\n" for n in ("lo", "eth0", "net1")))


class FakeNs:
    def __init__(self, inode: int, is_host: bool = False, names: bytes = NET_DEV) -> None:
        self.inode, self.is_host, self.names = inode, is_host, names

    def read(self, relpath: str) -> bytes:
        return self.names

    def path(self, relpath: str) -> str:
        return f"<{self.inode}>/{relpath}"

    def open_nsfd(self) -> int:
        return os.open("/dev/null", os.O_RDONLY)


class FakeTC:
    """The filters and qdiscs of one namespace's interfaces, as bpf.tc would change them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.qdiscs: set[int] = set()
        self.table: dict[tuple[int, str, int, int], int] = {}  # (ifindex, dir, handle, prio) -> prog id
        self.names = {11: "flow_ingress", 12: "flow_egress", 21: "flow_ingress", 22: "flow_egress",
                      99: "cilium_from_co"}
        self.index = {"lo": 1, "eth0": 2, "net1": 3}
        for name in ("create_clsact", "destroy_clsact", "attach", "query", "detach", "filters",
                     "program_name", "run_in_netns"):
            monkeypatch.setattr(tc, name, getattr(self, name))
        monkeypatch.setattr(flow.socket, "if_nametoindex", self.if_nametoindex)

    def if_nametoindex(self, name: str) -> int:
        if name not in self.index:
            raise OSError(19, "No such device")
        return self.index[name]

    def run_in_netns(self, jobs):
        out = []
        for _fd, job in jobs:
            try:
                out.append(job())
            except BaseException as exc:
                out.append(exc)
        return out

    def create_clsact(self, ifindex: int) -> bool:
        made = ifindex not in self.qdiscs
        self.qdiscs.add(ifindex)
        return made

    def destroy_clsact(self, ifindex: int) -> bool:
        self.table = {k: v for k, v in self.table.items() if k[0] != ifindex}
        had = ifindex in self.qdiscs
        self.qdiscs.discard(ifindex)
        return had

    def attach(self, ifindex, direction, prog_fd, handle, priority) -> int:
        assert ifindex in self.qdiscs
        self.table[(ifindex, direction, handle, priority)] = prog_fd  # fds stand for ids here
        return prog_fd

    def query(self, ifindex, direction, handle, priority):
        return self.table.get((ifindex, direction, handle, priority))

    def detach(self, ifindex, direction, handle, priority) -> bool:
        return self.table.pop((ifindex, direction, handle, priority), None) is not None

    def filters(self, ifindex, direction):
        return [(h, p) for (i, d, h, p) in self.table if i == ifindex and d == direction]

    def program_name(self, prog_id):
        return self.names.get(prog_id)

    def ours(self, ifindex: int) -> dict[str, int]:
        return {d: v for (i, d, h, p), v in self.table.items()
                if i == ifindex and (h, p) == (flow.TC_HANDLE, flow.TC_PRIORITY)}


@pytest.fixture
def fake_tc(monkeypatch: pytest.MonkeyPatch) -> FakeTC:
    return FakeTC(monkeypatch)


def attacher(**args: Any) -> flow.Attacher:
    probe = flow.FlowProbe(flow.FlowArgs(**args), ProbeContext(name="flow"))
    return flow.Attacher({"ingress": 21, "egress": 22}, {"ingress": 21, "egress": 22}, probe._wanted)


def test_attach_to_every_pod_interface_but_lo_and_host_only_by_name(fake_tc: FakeTC) -> None:
    att = attacher(interfaceName="eth0")
    assert att.sync({A_NS: FakeNs(A_NS)}, now=0) == []
    assert fake_tc.ours(2) == {"ingress": 21, "egress": 22} == fake_tc.ours(3)
    assert fake_tc.ours(1) == {}
    assert att.interfaces(A_NS) == 2 and att.state[A_NS].ifaces["eth0"].created_qdisc
    host = attacher(interfaceName="eth0")
    fake_tc.table.clear()
    host.sync({B_NS: FakeNs(B_NS, is_host=True)}, now=0)
    assert set(host.state[B_NS].ifaces) == {"eth0"}


def test_stale_filters_are_replaced_and_others_never_touched(fake_tc: FakeTC) -> None:
    # eth0 has an earlier agent's filters (programs 11, 12) on a qdisc it made; net1 has someone
    # else's program at our (handle, priority).
    fake_tc.qdiscs |= {2, 3}
    fake_tc.table[(2, "ingress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 11
    fake_tc.table[(2, "egress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 12
    fake_tc.table[(3, "ingress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 99
    att = attacher()
    errors = att.sync({A_NS: FakeNs(A_NS)}, now=0)
    assert att.stale_removed == 2 and fake_tc.ours(2) == {"ingress": 21, "egress": 22}
    assert [str(e) for e in errors] == [
        f"flow: interface net1: TC ingress filter {flow.TC_HANDLE:#x} prio {flow.TC_PRIORITY:#x} "
        "belongs to program 'cilium_from_co' (id 99); not replaced"]
    assert fake_tc.ours(3) == {"ingress": 99}
    assert set(att.state[A_NS].ifaces) == {"eth0"}
    assert att.state[A_NS].ifaces["eth0"].created_qdisc is False  # it was there


def test_detach_removes_only_the_qdiscs_it_made_and_left_empty(fake_tc: FakeTC) -> None:
    fake_tc.qdiscs.add(3)  # net1's qdisc predates us
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    fake_tc.table[(2, "ingress", 1, 1)] = 99  # someone adds a filter to the qdisc we made
    att.detach_all({A_NS: FakeNs(A_NS)})
    assert fake_tc.ours(2) == fake_tc.ours(3) == {}
    assert fake_tc.qdiscs == {2, 3}  # eth0's has another filter now, net1's is not ours
    assert att.state == {}
    del fake_tc.table[(2, "ingress", 1, 1)]
    att.sync({A_NS: FakeNs(A_NS)}, now=1)
    fake_tc.qdiscs.discard(2)
    fake_tc.table = {k: v for k, v in fake_tc.table.items() if k[0] != 2}
    fake_tc.qdiscs.add(2)  # a qdisc another tool made meanwhile; ours went with the old one
    att.sync({A_NS: FakeNs(A_NS)}, now=100)  # the periodic check puts the filters back
    assert fake_tc.ours(2) == {"ingress": 21, "egress": 22}


def test_interfaces_and_namespaces_that_go_are_forgotten(fake_tc: FakeTC) -> None:
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)}, now=0)
    only_eth0 = NET_DEV.replace(b"net1:", b"#net1:").split(b"#")[0]
    del fake_tc.index["net1"]
    att.sync({A_NS: FakeNs(A_NS, names=only_eth0)}, now=1)
    assert set(att.state) == {A_NS} and set(att.state[A_NS].ifaces) == {"eth0"}


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
