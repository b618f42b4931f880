# SPDX-License-Identifier: Apache-2.0
"""kernellatency on the real kernel: TCP over a veth pair between two throw-away namespaces.

Receive is timed in the namespace of the socket that gets the packet, transmit in the sender's,
each for exactly the packets the test sends. A deterministic slow transmit: the sender's
neighbour entry is flushed while the receiver ignores ARP, so the next data segment waits in the
neighbour queue (between TCP and net:net_dev_queue) until the test lets the receiver answer."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from otel_kubeskoop.probes import kernellatency
from tests.privileged.netnsutil import TestNetns, ip, netns, require_root, tcp_refused, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, no_ipv6
from tests.privileged.probes.latencyutil import KINDS, at_least, count, value, with_kind

require_root()

pytestmark = pytest.mark.privileged

DURATION = "kubeskoop.kernellatency.duration"
DIRECTION = "network.io.direction"
COUNTERS = ("rxslow", "rxslow100ms", "txslow", "txslow100ms")
MESSAGES = 20
SIZE = 100  # + 32 TCP (with timestamps) + 20 IP + 14 Ethernet = 166 bytes at net_dev_queue

ECHO_SERVER = r"""
import socket
s = socket.create_server(("10.231.0.2", 8080))
print("ready", flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    data = c.recv(4096)
    if not data:
        break
    c.sendall(b"!")
"""

# MESSAGES writes of SIZE bytes, each answered before the next: one data segment each way.
CLIENT = r"""
import socket
c = socket.create_connection(("10.231.0.2", 8080))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print(c.getsockname()[1], flush=True)
for _ in range({messages}):
    c.sendall(b"m" * {size})
    assert c.recv(1) == b"!"
"""


def echo_server(b: TestNetns) -> subprocess.Popen[bytes]:
    proc = b.popen(sys.executable, "-c", ECHO_SERVER, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def histograms(h: Harness, netns: int) -> dict[str, Any]:
    series = h.series("kernellatency", netns, DURATION)
    return {d: value(series, {DIRECTION: d}) for d in ("receive", "transmit")}


def counters(h: Harness, netns: int) -> dict[str, int]:
    return {w: h.series("kernellatency", netns, f"kubeskoop.kernellatency.{w}").get((), 0)
            for w in COUNTERS}


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(kernellatency.SPEC)
    assert {hook: str(point) for hook, point in probe.bpf.chosen.items()} == {
        "rx": "tp_btf/netif_receive_skb",
        "deliver": "tp_btf/tcp_probe",
        "queue": "tp_btf/net_dev_queue",
        "free": "tp_btf/kfree_skb",
        "consume": "tp_btf/consume_skb",
    }
    assert probe.bpf.obj.rejected == {}


@pytest.mark.parametrize("kind", KINDS)
def test_tcp_over_a_veth_each_side_in_its_namespace(harness: Harness, kind: str) -> None:
    probe = harness.start(kernellatency.SPEC, factory=with_kind(kernellatency.KernellatencyProbe, kind))
    assert {p.kind for p in probe.bpf.chosen.values()} == {kind}
    with netns() as a, netns() as b, netns() as c:
        no_ipv6(a, b)
        with veth_pair(a, b):  # a: 10.231.0.1, b: 10.231.0.2
            harness.rescan()
            server = echo_server(b)
            a.python(CLIENT.format(messages=MESSAGES, size=SIZE))
            server.wait(10)
            harness.drain()

            got_a, got_b = histograms(harness, a.inode), histograms(harness, b.inode)
            # Transmit: data segments only, MESSAGES each way (the handshake, ACKs and FIN carry
            # no data).
            assert count(got_a["transmit"]) == MESSAGES
            assert count(got_b["transmit"]) == MESSAGES
            # Receive: every segment reaching an established socket: the data, and ACKs.
            assert count(got_b["receive"]) >= MESSAGES
            assert count(got_a["receive"]) >= MESSAGES
            for h in (got_a, got_b):
                assert 0 < h["transmit"].sum < MESSAGES * 0.01  # microseconds each
                assert at_least(h["receive"], 0.01) == 0
            assert counters(harness, a.inode) == dict.fromkeys(COUNTERS, 0)
            assert counters(harness, b.inode) == dict.fromkeys(COUNTERS, 0)
            assert harness.series("kernellatency", c.inode) == {}
            assert harness.events_in(a.inode) == harness.events_in(b.inode) == []


def test_every_packet_above_a_low_threshold_is_an_event(harness: Harness) -> None:
    args = kernellatency.SPEC.args(thresholdMs=0.0001)  # 100 ns: every packet
    probe = harness.start(kernellatency.SPEC, args)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            harness.rescan()
            server = echo_server(b)
            port = int(a.python(CLIENT.format(messages=MESSAGES, size=SIZE)).stdout)
            server.wait(10)
            time.sleep(0.2)  # the last ACKs of the close
            harness.drain()

            sent = [e for e in harness.events_in(a.inode, "kubeskoop.kernellatency.txslow")
                    if attrs(e)["destination.port"] == 8080]
            assert len(sent) == MESSAGES
            for e in sent:
                got = attrs(e)
                assert e.upstream_type == "TXKERNEL_SLOW"
                assert (got["source.address"], got["source.port"]) == ("10.231.0.1", port)
                assert got["destination.address"] == "10.231.0.2"
                assert (got["network.type"], got["network.transport"]) == ("ipv4", "tcp")
                assert got["network.interface.name"] == dev_a
                assert got["network.io.direction"] == "transmit"
                assert got["kubeskoop.packet.bytes"] == SIZE + 66
                assert 0 < got["kubeskoop.latency"] < 0.01
                assert got["kubeskoop.latency.start"] == kernellatency.TX_START
                assert got["kubeskoop.latency.end"] == "tp_btf/net_dev_queue"

            received = [e for e in harness.events_in(b.inode, "kubeskoop.kernellatency.rxslow")
                        if attrs(e)["source.port"] == port]
            assert len(received) >= MESSAGES
            data = [e for e in received if attrs(e)["kubeskoop.packet.bytes"] == SIZE + 52]
            assert len(data) == MESSAGES  # skb->len from the IP header on: 100 + 32 + 20
            for e in received:
                got = attrs(e)
                assert e.upstream_type == "RXKERNEL_SLOW"
                assert (got["source.address"], got["destination.address"]) == ("10.231.0.1", "10.231.0.2")
                assert got["destination.port"] == 8080
                assert got["network.interface.name"] == dev_b
                assert got["network.io.direction"] == "receive"
                assert (got["kubeskoop.latency.start"], got["kubeskoop.latency.end"]) == (
                    "tp_btf/netif_receive_skb", "tp_btf/tcp_probe")
            # Every receive measured in b is an event (rate limit 100/s, burst 200, not reached).
            measured = count(histograms(harness, b.inode)["receive"])
            harness.drain()
            assert len(harness.events_in(b.inode, "kubeskoop.kernellatency.rxslow")) == measured
            assert probe.bpf.losses()["rate_limited"] == 0


# The client connects and exchanges one message (both neighbour entries resolved), says "ready",
# waits for "go", then writes once more and waits for the answer.
HELD_CLIENT = r"""
import socket, sys
c = socket.create_connection(("10.231.0.2", 8080))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(b"h"); assert c.recv(1) == b"!"
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
c.sendall(b"w" * 100)
assert c.recv(1) == b"!"
"""


def test_a_segment_held_for_arp_is_slow_in_the_sender(harness: Harness) -> None:
    harness.start(kernellatency.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            # a asks every 50 ms and keeps asking (the default gives up after 3 tries).
            a.run("sysctl", "-qw", f"net.ipv4.neigh.{dev_a}.retrans_time_ms=50",
                  f"net.ipv4.neigh.{dev_a}.mcast_solicit=40")
            harness.rescan()
            server = echo_server(b)
            client = a.popen(sys.executable, "-c", HELD_CLIENT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
            assert client.stdout is not None and client.stdin is not None
            assert client.stdout.readline().strip() == b"ready"
            ip("-n", b.name, "link", "set", dev_b, "arp", "off")  # b ignores ARP requests
            ip("-n", a.name, "neigh", "flush", "dev", dev_a)  # a must resolve b again
            client.stdin.write(b"go\n")
            client.stdin.flush()
            time.sleep(0.25)
            ip("-n", b.name, "link", "set", dev_b, "arp", "on")  # the next request is answered
            assert client.wait(10) == 0
            server.wait(10)
            harness.drain()

            transmit = histograms(harness, a.inode)["transmit"]
            assert at_least(transmit, 0.1) >= 1
            got = counters(harness, a.inode)
            assert got["txslow"] >= 1 and got["txslow100ms"] >= 1
            assert got["rxslow"] == got["rxslow100ms"] == 0
            slow = [e for e in harness.events_in(a.inode, "kubeskoop.kernellatency.txslow")
                    if attrs(e)["kubeskoop.latency"] >= 0.2]
            assert slow, harness.events_in(a.inode)
            got = attrs(slow[0])
            assert got["destination.port"] == 8080 and got["network.interface.name"] == dev_a
            assert got["kubeskoop.latency"] < 2.0
            assert got["kubeskoop.packet.bytes"] == 166  # the 100-byte write


def test_received_packets_that_never_reach_a_socket_are_reclaimed(harness: Harness) -> None:
    probe = harness.start(kernellatency.SPEC)
    with netns() as a:
        harness.rescan()
        before = probe.hists.inflight()
        tcp_refused(a, 5)  # each SYN: no socket, dropped (kfree_skb); the RST: to SYN_SENT
        harness.drain()
        after = probe.hists.inflight()
        delta = {k: after[k] - before[k] for k in after}
        # 10 packets entered the stack (a start each, or a replacement of an entry whose skb was
        # freed without a tracepoint and whose memory came back); none reached ESTABLISHED; the
        # 5 SYNs were dropped through kfree_skb (NO_SOCKET), which removed their entries.
        assert delta["started"] + delta["replaced"] >= 10, delta
        assert delta["discarded"] >= 5, delta
        assert count(histograms(harness, a.inode)["receive"]) == 0  # none reached ESTABLISHED
    series = harness.collect("kernellatency")
    evicted = series[("kubeskoop.agent.bpf.inflight.evicted", None,
                      (("kubeskoop.probe", "kernellatency"), ("kubeskoop.bpf.map", "skbs")))]
    stats = probe.hists.inflight()
    # the sample is the kernel's count, and every eviction was a start's (counted as one too)
    assert evicted == stats["evicted"] <= stats["started"]
