# SPDX-License-Identifier: Apache-2.0
"""tcpretrans on the real kernel: retransmissions made on purpose between two throw-away
namespaces with iptables DROP rules, checked by exact namespace and kind, and against the
namespace's own ``Tcp: RetransSegs`` (every segment here is a single-segment skb)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import tcpretrans
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, connect_times_out, iptables, no_ipv6, require_iptables, serve, snmp_tcp

require_root()

pytestmark = pytest.mark.privileged

TOTAL = "kubeskoop.tcpretrans.total"
TYPE = "kubeskoop.retransmit.type"


def by_type(h: Harness, netns: int) -> dict[str, int]:
    return {dict(a)[TYPE]: v for a, v in h.series("tcpretrans", netns, TOTAL).items()}


Counts = dict[int, tuple[dict[str, int], int]]  # inode -> (retransmissions by type, RetransSegs)


def settled(h: Harness, *namespaces: TestNetns) -> Counts:
    """{inode: (retransmissions by type, RetransSegs)}, read between two retransmissions: both
    the same 50 ms later. (RetransSegs and tcp:tcp_retransmit_skb do not move at the same
    instant: a read during a retransmission can see it in one and not yet in the other.)"""
    def read() -> tuple[dict[int, int], dict[int, dict[str, int]]]:
        return ({ns.inode: snmp_tcp(ns, "RetransSegs") for ns in namespaces},
                {ns.inode: by_type(h, ns.inode) for ns in namespaces})

    while True:
        segs, counted = read()
        h.drain(0.05)
        if read() == (segs, counted):
            return {inode: (counted[inode], segs[inode]) for inode in segs}


def blackholed_writer(a: TestNetns) -> subprocess.Popen[bytes]:
    """A connection from a to b:7000 that has exchanged data; it writes 100 more bytes when a
    line arrives on its stdin."""
    code = (
        "import socket, sys, time\n"
        "c = socket.create_connection(('10.231.0.2', 7000))\n"
        "c.sendall(b'x' * 100); time.sleep(0.2)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.sendall(b'y' * 100)\n"
        "time.sleep(60)\n"
    )
    proc = a.popen(sys.executable, "-c", code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(tcpretrans.SPEC)
    assert probe.chosen == {
        "retransmit": AttachPoint("tp_btf", "tcp_retransmit_skb"),
        "synack": AttachPoint("tp_btf", "tcp_retransmit_synack"),
    }


@pytest.mark.parametrize("tail_loss_probe", [False, True], ids=["rto_only", "with_tlp"])
def test_dropping_an_established_connection_gives_loss_retransmits(
    harness: Harness, tail_loss_probe: bool
) -> None:
    require_iptables()
    harness.start(tcpretrans.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        # Without tail loss probes (net.ipv4.tcp_early_retrans=0, per namespace) the first
        # retransmission of a blackholed connection is the RTO's; with them (the default) one
        # probe (TLP) goes first, in TCP_CA_Open, which is "fast".
        if not tail_loss_probe:
            a.run("sysctl", "-qw", "net.ipv4.tcp_early_retrans=0")
        with veth_pair(a, b):
            server = serve(b, "10.231.0.2", 7000)
            client = blackholed_writer(a)
            assert snmp_tcp(a, "RetransSegs") == 0
            iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "7000", "-j", "DROP")
            assert client.stdin is not None
            client.stdin.write(b"go\n")
            client.stdin.flush()
            time.sleep(1.8)  # RTOs at about 0.2, 0.6 and 1.4 s
            got = settled(harness, a, b)
            client.kill()
            server.kill()

            counted, segs = got[a.inode]
            assert segs >= 3
            if tail_loss_probe:
                assert counted == {"fast": 1, "loss": segs - 1}
            else:
                assert counted == {"loss": segs}
            assert got[b.inode] == ({}, 0)

            events = harness.events_in(a.inode)
            assert len(events) == segs and harness.events_in(b.inode) == []
            kinds = [attrs(e)[TYPE] for e in events]
            assert kinds == (["fast"] if tail_loss_probe else []) + ["loss"] * (segs - tail_loss_probe)
            for e in events:
                got_attrs = attrs(e)
                assert (e.name, e.upstream_type) == ("kubeskoop.tcpretrans.retransmit", "TCPRetrans")
                assert got_attrs["network.connection.state"] == "established"
                assert (got_attrs["source.address"], got_attrs["destination.address"]) == (
                    "10.231.0.1", "10.231.0.2")
                assert got_attrs["destination.port"] == 7000
                assert (got_attrs["network.type"], got_attrs["network.transport"]) == ("ipv4", "tcp")


def test_syns_to_a_namespace_that_drops_them_are_syn(harness: Harness) -> None:
    require_iptables()
    harness.start(tcpretrans.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "6000", "-j", "DROP")
            connect_times_out(a, "10.231.0.2", 6000, timeout=2.5)
            got = settled(harness, a, b)
            counted, segs = got[a.inode]
            assert segs >= 2 and counted == {"syn": segs}
            assert got[b.inode] == ({}, 0)
            events = harness.events_in(a.inode)
            assert [attrs(e)[TYPE] for e in events] == ["syn"] * segs
            assert {attrs(e)["network.connection.state"] for e in events} == {"syn_sent"}
            assert {attrs(e)["destination.port"] for e in events} == {6000}


def dropped_synacks(harness: Harness, timeout: float) -> tuple[int, int, Counts]:
    """Connect from a to a listener in b while a drops b's SYN-ACKs, for ``timeout`` seconds: a
    retransmits its SYN and b its SYN-ACK. (a's inode, b's inode, :func:`settled` counts.)"""
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            server = serve(b, "10.231.0.2", 7000, accept=False)
            iptables(a, "-A", "INPUT", "-p", "tcp", "--sport", "7000", "--tcp-flags", "SYN,ACK",
                     "SYN,ACK", "-j", "DROP")
            connect_times_out(a, "10.231.0.2", 7000, timeout=timeout)
            got = settled(harness, a, b)
            server.kill()
    return a.inode, b.inode, got


def test_lost_syn_acks_are_synack_at_the_listener(harness: Harness) -> None:
    require_iptables()
    harness.start(tcpretrans.SPEC)
    a, b, got = dropped_synacks(harness, timeout=2.5)
    counted_b, segs_b = got[b]
    counted_a, segs_a = got[a]
    assert segs_b >= 2 and counted_b == {"synack": segs_b}
    assert segs_a >= 2 and counted_a == {"syn": segs_a}
    for e in harness.events_in(b):
        got_attrs = attrs(e)
        assert got_attrs[TYPE] == "synack"
        assert got_attrs["network.connection.state"] == "syn_received"  # request socket
        assert (got_attrs["source.address"], got_attrs["source.port"]) == ("10.231.0.2", 7000)
        assert got_attrs["destination.address"] == "10.231.0.1"


def test_classic_tracepoints_classify_the_same(harness: Harness) -> None:
    require_iptables()

    class ClassicOnly(tcpretrans.TcpretransProbe):
        PLANS = tuple(
            type(p)(p.hook, tuple(c for c in p.candidates if c.point.kind == "tracepoint"))
            for p in tcpretrans.PLANS
        )

    probe = harness.start(tcpretrans.SPEC, factory=ClassicOnly)
    assert probe.chosen == {
        "retransmit": AttachPoint("tracepoint", "tcp/tcp_retransmit_skb"),
        "synack": AttachPoint("tracepoint", "tcp/tcp_retransmit_synack"),
    }
    a, b, got = dropped_synacks(harness, timeout=1.5)
    assert got[a][0] == {"syn": got[a][1]} and got[a][1] >= 1
    assert got[b][0] == {"synack": got[b][1]} and got[b][1] >= 1
