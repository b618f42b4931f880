# SPDX-License-Identifier: Apache-2.0
"""netiftxlat on the real kernel: a tbf qdisc with a low rate on a test veth makes qdisc waits of
a known size (one 1042-byte frame every 8.3 ms at 1 Mbit/s), which must land in the histogram
buckets they imply, on the right namespace and interface, with events and upstream's counter."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import netiftxlat
from tests.privileged.netnsutil import TestNetns, ip, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, no_ipv6
from tests.privileged.probes.latencyutil import KINDS, at_least, below, count, minus, value, with_kind

require_root()

pytestmark = pytest.mark.privileged

DURATION = "kubeskoop.netiftxlat.duration"
QDISCSLOW = "kubeskoop.netiftxlat.qdiscslow100ms"
IFNAME = "network.interface.name"
STAGE = "kubeskoop.latency.stage"

PACKETS = 60
PAYLOAD = 1000  # + 8 UDP + 20 IP + 14 Ethernet = 1042 bytes on the wire
RATE_BITS = 1_000_000
PER_PACKET = (PAYLOAD + 42) * 8 / RATE_BITS  # 8.3 ms

BLAST = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"x" * {size}, ("10.231.0.2", 9999))
"""


def resolved(a: TestNetns, b: TestNetns, dev_a: str, dev_b: str) -> None:
    """b's address resolved for good in a, so no ARP goes first."""
    mac_b = json.loads(ip("-n", b.name, "-j", "link", "show", dev_b).stdout)[0]["address"]
    ip("-n", a.name, "neigh", "replace", "10.231.0.2", "lladdr", mac_b, "dev", dev_a, "nud",
       "permanent")


def shaped_pair(a: TestNetns, b: TestNetns, dev_a: str, dev_b: str, limit: str = "") -> None:
    """tbf at 1 Mbit/s on a's end, b's address resolved."""
    resolved(a, b, dev_a, dev_b)
    extra = ["limit", limit] if limit else ["latency", "5s"]
    a.run("tc", "qdisc", "add", "dev", dev_a, "root", "tbf", "rate", f"{RATE_BITS}bit",
          "burst", "1600", *extra)


def blast(a: TestNetns, packets: int = PACKETS) -> None:
    a.python(BLAST.format(count=packets, size=PAYLOAD))
    time.sleep(packets * PER_PACKET + 0.5)  # let the qdisc drain


def qdisc_drops(a: TestNetns, dev: str) -> int:
    out = a.run("tc", "-s", "qdisc", "show", "dev", dev).stdout
    return int(re.search(r"dropped (\d+)", out).group(1))


def hists(h: Harness, inode: int, dev: str) -> dict[str, Any]:
    series = h.series("netiftxlat", inode, DURATION)
    return {stage: value(series, {IFNAME: dev, STAGE: stage}) for stage in ("qdisc", "xmit")}


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(netiftxlat.SPEC)
    assert probe.bpf.chosen == {
        "queue": AttachPoint("tp_btf", "net_dev_queue"),
        "start": AttachPoint("tp_btf", "net_dev_start_xmit"),
        "xmit": AttachPoint("tp_btf", "net_dev_xmit"),
        "free": AttachPoint("tp_btf", "kfree_skb"),
        "consume": AttachPoint("tp_btf", "consume_skb"),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_tbf_waits_land_in_the_buckets_they_imply(harness: Harness, kind: str) -> None:
    args = netiftxlat.NetiftxlatArgs(thresholdMs=20)
    probe = harness.start(netiftxlat.SPEC, args, factory=with_kind(netiftxlat.NetiftxlatProbe, kind))
    assert {p.kind for p in probe.bpf.chosen.values()} == {kind}
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            shaped_pair(a, b, dev_a, dev_b)
            before = hists(harness, a.inode, dev_a)
            slow_before = value(harness.series("netiftxlat", a.inode, QDISCSLOW), {IFNAME: dev_a}) or 0
            blast(a)
            harness.drain()
            after = hists(harness, a.inode, dev_a)
            slow = value(harness.series("netiftxlat", a.inode, QDISCSLOW), {IFNAME: dev_a}) - slow_before
            peer = harness.series("netiftxlat", b.inode, DURATION)

    qdisc = minus(after["qdisc"], before["qdisc"])
    xmit = minus(after["xmit"], before["xmit"])
    # Packet k waits about k * 8.3 ms behind the ones before it (the burst lets the first through).
    # The sender needs ~1 ms for all of them; the bounds leave it 100 ms on a loaded machine.
    assert PACKETS <= count(qdisc) <= PACKETS + 2
    assert at_least(qdisc, 0.0671) >= PACKETS - 25  # k >= 9 waits 75 ms+: buckets from 2^26 ns
    assert at_least(qdisc, 1.07) == 0  # the last waits ~0.5 s
    expected_sum = PER_PACKET * PACKETS * (PACKETS - 1) / 2
    assert 0.5 * expected_sum <= qdisc.sum <= 1.2 * expected_sum
    # veth's ndo_start_xmit hands the packet to the peer at once.
    assert PACKETS <= count(xmit) <= PACKETS + 2
    assert below(xmit, 0.001) >= PACKETS - 2
    # Upstream's counter: waits over 100 ms (k >= 12, 48 of them).
    assert PACKETS - 25 <= slow <= PACKETS - 9
    # The peer's end has no shaper: its replies (ICMP port unreachable) wait for nothing.
    assert at_least(value(peer, {STAGE: "qdisc"}), 0.001) == 0

    events = harness.events_in(a.inode, "kubeskoop.netiftxlat.qdisc")
    assert PACKETS - 6 <= len(events) <= PACKETS
    for event in events:
        e = attrs(event)
        assert event.upstream_type == "NETIFTXLAT_QDISC"
        assert e["kubeskoop.latency"] > 0.020
        assert e["kubeskoop.latency.qdisc"] == e["kubeskoop.latency"]
        assert e[STAGE] == "qdisc"
        assert e[IFNAME] == dev_a
        assert e["network.transport"] == "udp"
        assert (e["source.address"], e["destination.address"]) == ("10.231.0.1", "10.231.0.2")
        assert e["destination.port"] == 9999
        assert e["kubeskoop.packet.bytes"] == PAYLOAD + 42
    assert not harness.events_in(a.inode, "kubeskoop.netiftxlat.xmit")


def test_a_device_without_a_queue_is_timed_on_its_cpu(harness: Harness) -> None:
    """veth's noqueue: each packet's start record waits in a per-CPU slot, not the shared table
    (bpf/netiftxlat.bpf.h), and every packet is still timed in both stages."""
    probe = harness.start(netiftxlat.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            resolved(a, b, dev_a, dev_b)
            ifindex = json.loads(ip("-n", a.name, "-j", "link", "show", dev_a).stdout)[0]["ifindex"]
            before, inflight_before = hists(harness, a.inode, dev_a), probe.hists.inflight()
            a.python(BLAST.format(count=PACKETS, size=PAYLOAD))
            harness.drain()
            after, inflight_after = hists(harness, a.inode, dev_a), probe.hists.inflight()
            held = probe.bpf.map("held").lookup(0)
    qdisc = minus(after["qdisc"], before["qdisc"])
    xmit = minus(after["xmit"], before["xmit"])
    assert PACKETS <= count(qdisc) <= PACKETS + 2
    assert below(qdisc, 0.001) == count(qdisc)  # nothing to wait in
    assert PACKETS <= count(xmit) <= PACKETS + 2
    # The sender's CPU held its last packet's record, and took it at net_dev_start_xmit.
    assert any(h.key.ifindex == ifindex and h.key.skb == 0 and h.value.len == PAYLOAD + 42 for h in held)
    assert live(inflight_after) <= live(inflight_before) + 2  # (other traffic on the machine)
    assert inflight_after["evicted"] == inflight_before["evicted"]


def test_events_over_the_rate_are_counted_as_lost(harness: Harness) -> None:
    args = netiftxlat.NetiftxlatArgs(thresholdMs=1, eventRate=1, eventBurst=3)
    probe = harness.start(netiftxlat.SPEC, args)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            shaped_pair(a, b, dev_a, dev_b)
            lost_before = probe.bpf.losses()["rate_limited"]
            blast(a, 30)
            harness.drain()
            lost = probe.bpf.losses()["rate_limited"] - lost_before
    delivered = len(harness.events_in(a.inode))
    assert 3 <= delivered <= 5  # the burst, and a token a second after it
    assert delivered + lost >= 30 - 2  # every wait over 1 ms but the first one or two


def test_packets_dropped_by_the_qdisc_leave_no_entry(harness: Harness) -> None:
    probe = harness.start(netiftxlat.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            shaped_pair(a, b, dev_a, dev_b, limit="3000")  # room for two frames: the rest drop
            before = probe.hists.inflight()
            blast(a)
            drops = qdisc_drops(a, dev_a)
            after = probe.hists.inflight()
    assert drops >= PACKETS - 10
    assert after["discarded"] - before["discarded"] >= drops
    assert live(after) <= live(before) + 2  # (other traffic on the machine)
    assert probe.hists.evicted() == 0


def live(inflight: dict[str, int]) -> int:
    """Start records in the table now: every way out of it is counted (bpf/include/latency.h)."""
    return inflight["started"] - inflight["ended"] - inflight["discarded"] - inflight["evicted"]


def test_histograms_of_a_vanished_namespace_are_deleted(harness: Harness) -> None:
    probe = harness.start(netiftxlat.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b) as (dev_a, dev_b):
            shaped_pair(a, b, dev_a, dev_b)
            blast(a, 3)
            assert hists(harness, a.inode, dev_a)["qdisc"] is not None
            gone = a.inode
    assert any(key.netns == gone for key, _ in probe.hists.read())
    first = harness.collect("netiftxlat")  # missing once: not reported, kept
    assert not [k for k in first if k[1] == gone]
    assert any(key.netns == gone for key, _ in probe.hists.read())
    harness.collect("netiftxlat")  # missing twice: deleted
    assert not any(key.netns == gone for key, _ in probe.hists.read())
