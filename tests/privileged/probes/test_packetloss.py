# SPDX-License-Identifier: Apache-2.0
"""packetloss on the real kernel: drops made on purpose in throw-away namespaces (closed ports,
iptables DROP rules), checked by exact namespace, reason, protocol and count; and the event
accounting under a storm: delivered + counted losses == drops the kernel saw."""

from __future__ import annotations

import time

import pytest

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import packetloss
from tests.privileged.netnsutil import netns, require_root, tcp_refused, veth_pair
from tests.privileged.probes.conftest import (
    Harness,
    attrs,
    iptables,
    is_symbol,
    no_ipv6,
    require_iptables,
    tcp6_refused,
)
from tests.privileged.probes.latencyutil import with_kind


require_root()

pytestmark = pytest.mark.privileged

TOTAL = "kubeskoop.packetloss.total"
NETFILTER = "kubeskoop.packetloss.netfilter"
REASON = "kubeskoop.drop.reason"


def ip_drops(h: Harness, netns: int) -> dict[tuple[str, str, str], int]:
    """{(reason, network.type, network.transport): drops} of the IP packets dropped in netns."""
    out = {}
    for a, v in h.series("packetloss", netns, TOTAL).items():
        got = dict(a)
        if "network.type" in got:
            out[(got[REASON], got["network.type"], got["network.transport"])] = v
    return out


def test_attaches_to_the_btf_tracepoint(harness: Harness) -> None:
    probe = harness.start(packetloss.SPEC)
    assert probe.bpf.chosen == {"free": AttachPoint("tp_btf", "kfree_skb")}
    assert probe.bpf.obj.rejected == {}


def test_closed_port_drops_are_no_socket_in_that_namespace(harness: Harness) -> None:
    harness.start(packetloss.SPEC)
    with netns() as a, netns() as b:
        tcp_refused(a, 5)
        harness.drain()
        assert harness.series("packetloss", a.inode) == {
            (("kubeskoop.drop.reason", "NO_SOCKET"), ("network.type", "ipv4"),
             ("network.transport", "tcp")): 5,
        }
        assert harness.series("packetloss", b.inode) == {}
        events = harness.events_in(a.inode)
        assert len(events) == 5
        for e in events:
            got = attrs(e)
            assert (e.name, e.upstream_type) == ("kubeskoop.packetloss.drop", "PacketLoss")
            assert got[REASON] == "NO_SOCKET"
            assert is_symbol(got["kubeskoop.drop.location"], "tcp_v4_rcv"), got
            assert got["destination.port"] == 9 and got["source.port"] > 1024
            assert got["source.address"] == got["destination.address"] == "127.0.0.1"
            assert got["network.interface.name"] == "lo"
            assert "kubeskoop.stack" not in got  # enableStack is off
        assert harness.events_in(b.inode) == []


def test_ipv6_drops(harness: Harness) -> None:
    harness.start(packetloss.SPEC)
    with netns() as a:
        tcp6_refused(a, 3)
        harness.drain()
        assert ip_drops(harness, a.inode) == {("NO_SOCKET", "ipv6", "tcp"): 3}
        for e in harness.events_in(a.inode):
            got = attrs(e)
            assert got["source.address"] == got["destination.address"] == "::1"
            assert is_symbol(got["kubeskoop.drop.location"], "tcp_v6_rcv"), got


def test_an_iptables_drop_rule_gives_netfilter_drops_there(harness: Harness) -> None:
    require_iptables()
    harness.start(packetloss.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (_, dev_b):  # a: 10.231.0.1, b: 10.231.0.2
            iptables(b, "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP")
            a.python(
                "import socket\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "for _ in range(7):\n"
                "    s.sendto(b'x', ('10.231.0.2', 5000))\n"
            )
            time.sleep(0.1)
            harness.drain()
            assert ip_drops(harness, b.inode) == {("NETFILTER_DROP", "ipv4", "udp"): 7}
            assert harness.series("packetloss", b.inode, NETFILTER) == {
                (("network.type", "ipv4"), ("network.transport", "udp")): 7,
            }
            assert ip_drops(harness, a.inode) == {}
            assert harness.series("packetloss", a.inode, NETFILTER) == {}

            events = [e for e in harness.events_in(b.inode) if attrs(e)[REASON] == "NETFILTER_DROP"]
            assert len(events) == 7
            for e in events:
                got = attrs(e)
                # iptables-nft drops inside nft_do_chain; the legacy backend in nf_hook_slow.
                where = got["kubeskoop.drop.location"]
                assert is_symbol(where, "nft_do_chain") or is_symbol(where, "nf_hook_slow"), where
                assert (got["source.address"], got["destination.address"]) == ("10.231.0.1", "10.231.0.2")
                assert got["destination.port"] == 5000 and got["network.transport"] == "udp"
                assert got["network.interface.name"] == dev_b
            assert not [e for e in harness.events_in(a.inode) if attrs(e)[REASON] == "NETFILTER_DROP"]


def test_enable_stack_puts_the_kernel_stack_in_events(harness: Harness) -> None:
    harness.start(packetloss.SPEC, packetloss.PacketlossArgs(enableStack=True))
    with netns() as a:
        tcp_refused(a, 2)
        harness.drain()
        events = harness.events_in(a.inode)
        assert len(events) == 2
        for e in events:
            stack = attrs(e)["kubeskoop.stack"]
            assert isinstance(stack, tuple) and 3 <= len(stack) <= 32
            assert any(is_symbol(frame, "tcp_v4_rcv") for frame in stack), stack
            assert all("+0x" in frame for frame in stack)


def counted(probe: packetloss.PacketlossProbe) -> int:
    """Drops the kernel counted, in every namespace (the counters map as it is)."""
    return sum(value for _, value in probe.bpf.map("counters").items())


def namespaces_counted(probe: packetloss.PacketlossProbe) -> set[int]:
    return {key.netns for key, _ in probe.bpf.map("counters").items()}


def settled(probe: packetloss.PacketlossProbe, h: Harness,
            timeout: float = 30.0) -> tuple[int, dict[str, int]]:
    """(drops counted in every namespace, kernel losses), read when a pass over the ring buffer
    changes neither: the kernel counts a drop just before it reserves its event. Fails if they
    still change after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        before = counted(probe), probe.bpf.losses()
        h.drain(0.1)
        after = counted(probe), probe.bpf.losses()
        if before == after:
            return after
        if time.monotonic() > deadline:
            pytest.fail(f"drops and losses still changing after {timeout:.0f} s: {after}")


@pytest.mark.parametrize(
    ("args", "limited_by"),
    [
        (packetloss.PacketlossArgs(), "rate_limited"),  # 100/s, bursts of 200
        (packetloss.PacketlossArgs(eventRate=0), "ring_buffer_full"),  # no limit, ring not drained
    ],
    ids=["rate_limit", "ring_buffer_full"],
)
def test_storm_every_drop_is_delivered_or_counted_lost(
    harness: Harness, args: packetloss.PacketlossArgs, limited_by: str
) -> None:
    probe = harness.start(packetloss.SPEC, args)
    storm = 5000
    with netns() as a:
        tcp_refused(a, storm)  # the ring is not pumped meanwhile
        counted, losses = settled(probe, harness)

        caused = ip_drops(harness, a.inode)
        assert caused == {("NO_SOCKET", "ipv4", "tcp"): storm}
        delivered_a = len(harness.events_in(a.inode))
        assert 0 < delivered_a < storm
        # a's undelivered drops are all lost for this one reason (other namespaces may add some).
        assert losses[limited_by] >= storm - delivered_a
        # Exact, over every namespace (the probe's losses are not per namespace): each drop the
        # kernel counted was either delivered or counted lost.
        assert len(harness.events) + losses["rate_limited"] + losses["ring_buffer_full"] == counted
        if limited_by == "rate_limited":
            assert delivered_a <= args.event_burst + args.event_rate * 30
        lost = {dict(k[2])["kubeskoop.loss.reason"]: v for k, v in harness.collect("packetloss").items()
                if k[0] == "kubeskoop.agent.events.lost"}
        assert lost[limited_by] >= losses[limited_by]


def test_counters_of_a_vanished_namespace_are_deleted(harness: Harness) -> None:
    probe = harness.start(packetloss.SPEC, events=False)
    with netns() as a:
        gone = a.inode
        tcp_refused(a, 2)
        assert ip_drops(harness, gone) == {("NO_SOCKET", "ipv4", "tcp"): 2}
    assert gone in namespaces_counted(probe)
    harness.collect("packetloss")  # first collection without it: kept, not reported
    assert gone in namespaces_counted(probe)
    assert not [k for k in harness.collect("packetloss") if k[1] == gone]  # second: deleted
    assert gone not in namespaces_counted(probe)


def test_classic_tracepoint_counts_the_same(harness: Harness) -> None:
    probe = harness.start(packetloss.SPEC, factory=with_kind(packetloss.SPEC.factory, "tracepoint"))
    assert probe.bpf.chosen == {"free": AttachPoint("tracepoint", "skb/kfree_skb")}
    with netns() as a:
        tcp_refused(a, 3)
        harness.drain()
        assert ip_drops(harness, a.inode) == {("NO_SOCKET", "ipv4", "tcp"): 3}
        for e in harness.events_in(a.inode):
            assert is_symbol(attrs(e)["kubeskoop.drop.location"], "tcp_v4_rcv")
