# SPDX-License-Identifier: Apache-2.0
"""tcpretrans on the real kernel: retransmissions made on purpose between two throw-away
namespaces with iptables DROP rules, checked by exact namespace and kind, and against the
namespace's own counters: ``Tcp: RetransSegs`` (every segment here is a single-segment skb) less
``TcpExt: TCPRetransFail`` (attempts whose transmit failed, which the probe does not count)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import tcpretrans
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, connect_times_out, iptables, no_ipv6, require_iptables, serve, snmp_tcp
from tests.privileged.probes.latencyutil import with_kind

require_root()

pytestmark = pytest.mark.privileged

TOTAL = "kubeskoop.tcpretrans.total"
TYPE = "kubeskoop.retransmit.type"


def by_type(h: Harness, netns: int) -> dict[str, int]:
    return {dict(a)[TYPE]: v for a, v in h.series("tcpretrans", netns, TOTAL).items()}


def tcpext(ns: TestNetns, field: str) -> int:
    """A ``TcpExt:`` counter of the namespace's /proc/net/netstat."""
    text = ns.run("cat", "/proc/net/netstat").stdout
    header, values = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")][:2]
    return int(dict(zip(header, values))[field])


@dataclass(frozen=True)
class Retrans:
    """One namespace's retransmissions: the probe's by type, and the kernel's attempts
    (``RetransSegs``, counted before the transmit) and failed transmits (``TCPRetransFail``)."""

    counted: dict[str, int]
    segs: int
    failed: int

    @property
    def sent(self) -> int:
        return self.segs - self.failed


Counts = dict[int, Retrans]


def settled(h: Harness, *namespaces: TestNetns, timeout: float = 10.0) -> Counts:
    """Each namespace's :class:`Retrans`, read when, in every namespace, the probe has counted
    what the kernel sent and both hold still 50 ms later. The two do not move at the same
    instant (a read during a retransmission can see it in one and not yet in the other, longer
    when the machine is loaded); fails if they still disagree after ``timeout`` seconds."""
    def read() -> Counts:
        return {ns.inode: Retrans(by_type(h, ns.inode), snmp_tcp(ns, "RetransSegs"),
                                  tcpext(ns, "TCPRetransFail")) for ns in namespaces}

    deadline = time.monotonic() + timeout
    while True:
        first = read()
        h.drain(0.05)
        second = read()
        if first == second and all(sum(r.counted.values()) == r.sent for r in second.values()):
            return second
        if time.monotonic() > deadline:
            pytest.fail(f"probe counts and the kernel's still differ after {timeout:.0f} s: {second}; "
                        f"runs the kernel skipped: {h.probes['tcpretrans'].bpf_misses()}")


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
    assert probe.bpf.chosen == {
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

            retrans = got[a.inode]
            assert retrans.segs >= 3
            sent = retrans.sent
            if tail_loss_probe:
                assert retrans.counted == {"fast": 1, "loss": sent - 1}
            else:
                assert retrans.counted == {"loss": sent}
            assert got[b.inode] == Retrans({}, 0, 0)

            events = harness.events_in(a.inode)
            assert len(events) == sent and harness.events_in(b.inode) == []
            kinds = [attrs(e)[TYPE] for e in events]
            assert kinds == (["fast"] if tail_loss_probe else []) + ["loss"] * (sent - tail_loss_probe)
            for e in events:
                got_attrs = attrs(e)
                assert (e.name, e.upstream_type) == ("kubeskoop.tcpretrans.retransmit", "TCPRetrans")
                assert got_attrs["network.connection.state"] == "established"
                assert (got_attrs["source.address"], got_attrs["destination.address"]) == (
                    "10.231.0.1", "10.231.0.2")
                assert got_attrs["destination.port"] == 7000
                assert (got_attrs["network.type"], got_attrs["network.transport"]) == ("ipv4", "tcp")


def test_a_retransmission_that_fails_to_transmit_is_not_counted(harness: Harness) -> None:
    """RetransSegs counts an attempt before transmitting it, TCPRetransFail the transmits that
    fail; the probe counts only what was sent. Here every retransmission fails: a's device drops
    everything at its qdisc (pfifo of 0 packets) once the data has gone out."""
    require_iptables()
    harness.start(tcpretrans.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        a.run("sysctl", "-qw", "net.ipv4.tcp_early_retrans=0")
        with veth_pair(a, b) as (dev_a, _):
            server = serve(b, "10.231.0.2", 7000)
            client = blackholed_writer(a)
            iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "7000", "-j", "DROP")
            assert client.stdin is not None
            client.stdin.write(b"go\n")
            client.stdin.flush()
            time.sleep(0.1)  # the data has left a
            a.run("tc", "qdisc", "replace", "dev", dev_a, "root", "pfifo", "limit", "0")
            time.sleep(1.8)
            got = settled(harness, a)
            client.kill()
            server.kill()
    retrans = got[a.inode]
    assert retrans.segs >= 3 and retrans.failed == retrans.segs
    assert retrans.counted == {} and harness.events_in(a.inode) == []


def test_syns_to_a_namespace_that_drops_them_are_syn(harness: Harness) -> None:
    require_iptables()
    harness.start(tcpretrans.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "6000", "-j", "DROP")
            connect_times_out(a, "10.231.0.2", 6000, timeout=2.5)
            got = settled(harness, a, b)
            retrans = got[a.inode]
            assert retrans.segs >= 2 and retrans.counted == {"syn": retrans.sent}
            assert got[b.inode] == Retrans({}, 0, 0)
            events = harness.events_in(a.inode)
            assert [attrs(e)[TYPE] for e in events] == ["syn"] * retrans.sent
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
    assert got[b].segs >= 2 and got[b].counted == {"synack": got[b].sent}
    assert got[a].segs >= 2 and got[a].counted == {"syn": got[a].sent}
    for e in harness.events_in(b):
        got_attrs = attrs(e)
        assert got_attrs[TYPE] == "synack"
        assert got_attrs["network.connection.state"] == "syn_received"  # request socket
        assert (got_attrs["source.address"], got_attrs["source.port"]) == ("10.231.0.2", 7000)
        assert got_attrs["destination.address"] == "10.231.0.1"


def test_classic_tracepoints_classify_the_same(harness: Harness) -> None:
    require_iptables()

    probe = harness.start(tcpretrans.SPEC, factory=with_kind(tcpretrans.SPEC.factory, "tracepoint"))
    assert probe.bpf.chosen == {
        "retransmit": AttachPoint("tracepoint", "tcp/tcp_retransmit_skb"),
        "synack": AttachPoint("tracepoint", "tcp/tcp_retransmit_synack"),
    }
    a, b, got = dropped_synacks(harness, timeout=1.5)
    assert got[a].counted == {"syn": got[a].sent} and got[a].segs >= 1
    assert got[b].counted == {"synack": got[b].sent} and got[b].segs >= 1
