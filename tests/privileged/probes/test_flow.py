# SPDX-License-Identifier: Apache-2.0
"""flow on the real kernel: pods as throw-away namespaces whose ``eth0`` is one end of a veth
pair, the other end on a bridge in a third namespace standing in for the node, as a CNI wires
same-node pods. Traffic between two such pods never touches a host NIC (upstream's attach
point); it must be counted in both pods' namespaces, byte for byte.

The probe only ever sees the namespaces a test gives it (``ProbeContext.cycle``), so it never
attaches to other namespaces on the machine; every filter and qdisc it adds is checked gone."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from otel_kubeskoop.bpf import tc, tc_owner
from otel_kubeskoop.bpf.generated.flow import OBJECT
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import flow
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.nsexec import run_in_netns
from tests.privileged.netnsutil import TestNetns, ip, netns, require_root, unique_name

require_root()

pytestmark = pytest.mark.privileged

BYTES, PACKETS = "kubeskoop.flow.bytes", "kubeskoop.flow.packets"
UDP_OVERHEAD = {4: 8 + 20 + 14, 6: 8 + 40 + 14}  # UDP + IP + Ethernet headers per datagram


class Pods:
    """Pod namespaces on a bridge in a node namespace; a flow probe that sees the pods only."""

    def __init__(self, node: TestNetns, pods: list[TestNetns]) -> None:
        self.node, self.pods = node, pods
        self.discovery = NetnsDiscovery()
        self.cycle = Cycle()
        self.probe: flow.FlowProbe | None = None
        self.errors: list[BaseException] = []

    def rescan(self, *only: TestNetns) -> None:
        wanted = {p.inode for p in (only or self.pods)}
        self.cycle.namespaces = {i: ns for i, ns in self.discovery.scan().items() if i in wanted}

    def start(self, **args: Any) -> flow.FlowProbe:
        if not self.cycle.namespaces:
            self.rescan()
        ctx = ProbeContext(name="flow", cycle=self.cycle, errors=self.errors)
        self.probe = flow.FlowProbe(flow.FlowArgs(**args), ctx)
        self.probe.start()
        return self.probe

    def collect(self) -> dict[tuple[str, int | None, tuple[Any, ...]], Any]:
        assert self.probe is not None
        out = {}
        for s in self.probe.collect():
            key = (s.instrument.name, s.netns, s.attributes)
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
        return out

    def close(self) -> None:
        if self.probe is not None:
            self.probe.stop()
            self.probe.stop()  # idempotent
        self.discovery.close()


@contextlib.contextmanager
def pods_on_a_bridge(count: int = 2, ipv6: bool = False) -> Iterator[Pods]:
    """``count`` pods (10.231.0.<i+1>/24, fd00:231::<i+1>/64 with ``ipv6``) on br0 of a node.

    Without ``ipv6`` IPv6, multicast and IGMP reports of link-local groups are off, so that no
    IPv6 router or neighbour solicitation, MLD or IGMP report adds flows the test did not make."""
    with contextlib.ExitStack() as stack:
        node = stack.enter_context(netns())
        pods = [stack.enter_context(netns()) for _ in range(count)]
        for ns in (node, *pods):
            if not ipv6:
                ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                       "net.ipv6.conf.default.disable_ipv6=1",
                       "net.ipv4.igmp_link_local_mcast_reports=0")
        ip("-n", node.name, "link", "add", "br0", "type", "bridge")
        if not ipv6:
            ip("-n", node.name, "link", "set", "br0", "multicast", "off")
        ip("-n", node.name, "link", "set", "br0", "up")
        for i, pod in enumerate(pods, 1):
            host_side = unique_name("kskv", 11)
            ip("-n", node.name, "link", "add", host_side, "type", "veth",
               "peer", "name", "eth0", "netns", pod.name)
            if not ipv6:
                ip("-n", node.name, "link", "set", host_side, "multicast", "off")
            ip("-n", node.name, "link", "set", host_side, "master", "br0", "up")
            ip("-n", pod.name, "addr", "add", f"10.231.0.{i}/24", "dev", "eth0")
            if ipv6:
                ip("-n", pod.name, "addr", "add", f"fd00:231::{i}/64", "dev", "eth0", "nodad")
            if not ipv6:  # no IGMP reports: the only IP traffic is the test's
                ip("-n", pod.name, "link", "set", "eth0", "multicast", "off")
            ip("-n", pod.name, "link", "set", "eth0", "up")
        h = Pods(node, pods)
        try:
            yield h
        finally:
            h.close()


RECEIVER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)  # a datagram lost ends the receiver (the test fails) instead of hanging it
print("ready", flush=True)
n = 0
while n < int(sys.argv[3]):
    s.recv(65536)
    n += 1
print(n, flush=True)
"""

SENDER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"d" * int(sys.argv[4]), (sys.argv[1], int(sys.argv[2])))
print(s.getsockname()[1])
"""


def udp(src: TestNetns, dst: TestNetns, address: str, port: int, count: int, size: int) -> int:
    """``count`` datagrams of ``size`` bytes from src to a receiver in dst; the source port."""
    rx = dst.popen(sys.executable, "-c", RECEIVER, address, str(port), str(count),
                   stdout=subprocess.PIPE)
    assert rx.stdout is not None and rx.stdout.readline().strip() == b"ready"
    out = src.run(sys.executable, "-c", SENDER, address, str(port), str(count), str(size)).stdout
    assert rx.stdout.readline().strip() == str(count).encode()
    rx.wait(5)
    return int(out)


def series_of(got: dict[Any, Any], name: str, netns: int, **attrs: Any) -> dict[tuple[Any, ...], Any]:
    """{attributes: value} of instrument ``name`` in ``netns`` whose attributes include ``attrs``."""
    wanted = {(k.replace("_", "."), v) for k, v in attrs.items()}
    return {a: v for (n, ns, a), v in got.items() if n == name and ns == netns and wanted <= set(a)}


def tc_show(ns: TestNetns, *args: str) -> str:
    return ns.run("tc", *args).stdout


def ours_on(ns: TestNetns, dev: str = "eth0") -> bool:
    text = tc_show(ns, "filter", "show", "dev", dev, "ingress") + tc_show(
        ns, "filter", "show", "dev", dev, "egress")
    return "flow_ingress" in text or "flow_egress" in text


def clsact_on(ns: TestNetns, dev: str = "eth0") -> bool:
    return "clsact" in tc_show(ns, "qdisc", "show", "dev", dev)


def marked(ns: TestNetns, dev: str = "eth0") -> bool:
    """The interface's clsact qdisc carries otel-kubeskoop's marker (it made the qdisc)."""
    return f" {tc_owner.MARK_NAME} " in tc_show(ns, "filter", "show", "dev", dev, "ingress")


def ifindex_of(ns: TestNetns, dev: str = "eth0") -> int:
    return int(json.loads(ip("-n", ns.name, "-j", "link", "show", dev).stdout)[0]["ifindex"])


def in_netns(h: Pods, ns: TestNetns, job: Any) -> Any:
    """``job()`` run inside ``ns`` (as the probe runs its TC calls)."""
    nsfd = h.cycle.namespaces[ns.inode].open_nsfd()
    try:
        (res,) = run_in_netns([(nsfd, job)])
    finally:
        os.close(nsfd)
    assert not isinstance(res, BaseException), res
    return res


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_same_node_pod_to_pod_bytes_match_what_was_sent_in_both_pods(family: int) -> None:
    with pods_on_a_bridge(ipv6=family == 6) as h:
        a, b = h.pods
        probe = h.start(enablePortInLabel=True)
        assert ours_on(a) and ours_on(b) and not ours_on(h.node, "br0")
        src, dst = ("10.231.0.1", "10.231.0.2") if family == 4 else ("fd00:231::1", "fd00:231::2")
        count, size = 25, 1000
        sport = udp(a, b, dst, 5000, count, size)
        got = h.collect()

        flow_attrs = dict(network_type=f"ipv{family}", network_transport="udp",
                          source_address=src, source_port=sport,
                          destination_address=dst, destination_port=5000)
        sent = series_of(got, BYTES, a.inode, network_io_direction="transmit", **flow_attrs)
        received = series_of(got, BYTES, b.inode, network_io_direction="receive", **flow_attrs)
        # Exactly what was sent: payload + UDP, IP and Ethernet headers, once in each pod.
        assert list(sent.values()) == [count * (size + UDP_OVERHEAD[family])]
        assert list(received.values()) == list(sent.values())
        assert list(series_of(got, PACKETS, a.inode, network_io_direction="transmit",
                              **flow_attrs).values()) == [count]
        assert list(series_of(got, PACKETS, b.inode, network_io_direction="receive",
                              **flow_attrs).values()) == [count]
        # Nothing of it in the other direction's series of either pod.
        assert series_of(got, BYTES, a.inode, network_io_direction="receive", **flow_attrs) == {}
        assert got[("kubeskoop.flow.interfaces", a.inode, ())] == 1
        assert got[("kubeskoop.flow.overflow.flows", b.inode, ())] == 0
        assert h.errors == []
        assert probe.stats()["failed"] == 0


def test_tcp_bytes_in_both_pods_within_header_overhead() -> None:
    payload = 300_000
    with pods_on_a_bridge() as h:
        a, b = h.pods
        h.start()  # no ports: one series per direction and address pair
        server = b.popen(sys.executable, "-c",
                         "import socket\n"
                         "s = socket.create_server(('10.231.0.2', 8080)); print('ready', flush=True)\n"
                         "c, _ = s.accept(); n = 0\n"
                         "while (d := c.recv(65536)): n += len(d)\n"
                         "print(n, flush=True)\n", stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        a.python("import socket\n"
                 "c = socket.create_connection(('10.231.0.2', 8080))\n"
                 f"c.sendall(b'p' * {payload}); c.close()\n")
        assert server.stdout.readline().strip() == str(payload).encode()
        server.wait(5)
        got = h.collect()
        tcp = dict(network_type="ipv4", network_transport="tcp")
        out_a = series_of(got, BYTES, a.inode, network_io_direction="transmit", **tcp)
        in_b = series_of(got, BYTES, b.inode, network_io_direction="receive", **tcp)
        pkts_a = series_of(got, PACKETS, a.inode, network_io_direction="transmit", **tcp)
        ((attrs_a, bytes_a),) = out_a.items()
        assert dict(attrs_a)["source.address"] == "10.231.0.1" and "source.port" not in dict(attrs_a)
        (packets_a,) = pkts_a.values()
        # Each segment carries at most 66 bytes of headers (Ethernet 14, IP 20, TCP 20 + 12 of
        # timestamps); a GSO packet's headers are counted once.
        assert payload <= bytes_a <= payload + 66 * packets_a
        assert list(in_b.values()) == [bytes_a]  # the same packets, seen at the other pod
        # The ACKs flow back: b transmits, a receives, the same bytes.
        acks_b = series_of(got, BYTES, b.inode, network_io_direction="transmit", **tcp)
        acks_a = series_of(got, BYTES, a.inode, network_io_direction="receive", **tcp)
        assert list(acks_b.values()) == list(acks_a.values()) and list(acks_a.values())[0] > 0


def test_pods_and_interfaces_are_followed_and_leave_nothing_behind() -> None:
    with pods_on_a_bridge(count=3) as h:
        a, b, c = h.pods
        # a already has a clsact qdisc (another tool's, without our marker): it must stay.
        a.run("tc", "qdisc", "add", "dev", "eth0", "clsact")
        h.rescan(a, b)
        probe = h.start()
        assert ours_on(a) and ours_on(b) and not ours_on(c) and not clsact_on(c)
        assert not marked(a) and marked(b)
        state = probe.attacher.state

        # A pod appears (c enters the scan): attached at the next collection.
        h.rescan(a, b, c)
        h.collect()
        assert ours_on(c) and marked(c)

        # A second interface appears in a pod: attached too.
        ip("-n", a.name, "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
           "netns", h.node.name)
        ip("-n", a.name, "link", "set", "net1", "up")
        got = h.collect()
        assert got[("kubeskoop.flow.interfaces", a.inode, ())] == 2
        assert ours_on(a, "net1") and not ours_on(h.node, "net1p")

        # Traffic from c to b, then c goes away (the pod is deleted: its namespace, interfaces,
        # qdisc and filters with it): its state is forgotten at once, and its keys are deleted
        # from the kernel map after two collections without it.
        udp(c, b, "10.231.0.2", 5001, 3, 100)
        h.collect()
        assert any(flow.key_netns(raw)[0] == c.inode for raw, _, _ in probe.read())
        c._cleanup()
        ip("netns", "del", c.name)
        h.rescan(a, b)
        h.collect()
        assert c.inode not in state
        h.collect()
        assert not any(flow.key_netns(raw)[0] == c.inode for raw, _, _ in probe.read())

        # Someone else's filter lands on b's qdisc (which this probe made): at stop the qdisc
        # stays for it. a's qdisc predates the probe: it stays, without our filters.
        other = BPFObject.of(OBJECT)
        other.start()
        try:
            fd = other.program_fds()["flow_ingress"]
            ifindex = ifindex_of(b)
            in_netns(h, b, lambda: tc.attach(ifindex, "ingress", fd, 1, 1))
            handle = probe.attacher.handle
            assert f"handle {handle:#x} " in tc_show(b, "filter", "show", "dev", "eth0", "ingress")
            probe.stop()
            assert not ours_on(a) and clsact_on(a) and not marked(a)
            assert clsact_on(b) and "handle 0x1 " in tc_show(b, "filter", "show", "dev", "eth0", "ingress")
            assert f"handle {handle:#x} " not in tc_show(b, "filter", "show", "dev", "eth0", "ingress")
        finally:
            other.close()
        assert h.errors == []


def test_filters_of_a_killed_agent_are_reaped_and_its_qdisc_removed_by_the_next() -> None:
    with pods_on_a_bridge(count=1) as h:
        (a,) = h.pods
        crashed = h.start()
        old_ids = dict(crashed.attacher.prog_ids)
        # The agent dies without detaching: its filters keep its programs loaded, and no process
        # holds them any more.
        crashed.attacher = None
        crashed.bpf.obj.close()
        assert ours_on(a) and marked(a)
        assert f"id {old_ids['ingress']}" in tc_show(a, "filter", "show", "dev", "eth0", "ingress")

        h.probe = None
        fresh = h.start()
        assert fresh.attacher.reaped == 2  # ingress and egress
        text = tc_show(a, "filter", "show", "dev", "eth0", "ingress")
        assert f"id {fresh.attacher.prog_ids['ingress']}" in text and f"id {old_ids['ingress']}" not in text
        fresh.stop()
        # The qdisc the killed agent made carries the marker: the last agent out removes it.
        assert not ours_on(a) and not clsact_on(a)
        deadline = time.monotonic() + 5  # the old program is freed at last (after an RCU grace)
        while tc.program_name(old_ids["ingress"]) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tc.program_name(old_ids["ingress"]) is None


def test_cardinality_cap_folds_flows_into_an_overflow_series() -> None:
    with pods_on_a_bridge() as h:
        a, b = h.pods
        h.start(enablePortInLabel=True, maxSeries=3)
        for port in range(6000, 6005):
            udp(a, b, "10.231.0.2", port, 2, 10)
        got = h.collect()
        sent = series_of(got, BYTES, a.inode, network_io_direction="transmit")
        overflow = [(attrs, v) for attrs, v in sent.items() if ("kubeskoop.flow.overflow", True) in attrs]
        own = [(attrs, v) for attrs, v in sent.items() if ("kubeskoop.flow.overflow", True) not in attrs]
        everything_a = {k: v for k, v in got.items() if k[1] == a.inode}
        assert len(own) == 3 and len(overflow) == 1, everything_a
        assert overflow[0][0] == (("network.io.direction", "transmit"), ("kubeskoop.flow.overflow", True))
        assert sum(v for _, v in sent.items()) == 5 * 2 * (10 + UDP_OVERHEAD[4])
        assert overflow[0][1] == 2 * 2 * (10 + UDP_OVERHEAD[4])
        assert got[("kubeskoop.flow.overflow.flows", a.inode, ())] == 2
        # b has its own cap: 5 receive flows and the ICMP-free replies (none: receivers listen).
        assert got[("kubeskoop.flow.overflow.flows", b.inode, ())] == 2


def test_a_full_map_evicts_and_counts_it() -> None:
    with pods_on_a_bridge() as h:
        a, b = h.pods
        probe = h.start(enablePortInLabel=True, maxFlows=256)
        a.python("import socket\n"
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "for port in range(20000, 20600):\n"
                 "    s.sendto(b'e', ('10.231.0.2', port))\n")
        inserted = -1
        while inserted != probe.stats()["inserted"]:  # until the last packet (ICMP errors too) is in
            inserted = probe.stats()["inserted"]
            time.sleep(0.3)
        got = h.collect()
        stats = probe.stats()
        live = len(probe.read())
        evicted = got[("kubeskoop.agent.bpf.map.evicted", None,
                       (("kubeskoop.probe", "flow"), ("kubeskoop.bpf.map", "flows")))]
        assert live <= 256
        assert stats["inserted"] >= 1200  # a's 600 flows, b's 600 (and ICMP errors back)
        # Nothing moved after the collection (IPv6 off, no more traffic): the count is exact.
        assert evicted == stats["inserted"] - live - probe.deleted >= 1200 - 256
        assert got[("kubeskoop.agent.bpf.map.full", None,
                    (("kubeskoop.probe", "flow"), ("kubeskoop.bpf.map", "flows")))] == stats["failed"]
