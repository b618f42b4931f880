# SPDX-License-Identifier: Apache-2.0
"""netiftxlat: how long packets wait to be transmitted, per namespace and interface, in two stages.

The interval of each stage, between two kernel tracepoints (``bpf/netiftxlat.bpf.c``):

- ``qdisc``: ``net:net_dev_queue`` (``__dev_queue_xmit()`` hands the packet to the device's
  queueing discipline) -> ``net:net_dev_start_xmit`` (the qdisc releases it to the driver). Near
  zero on a device without a queue (veth and loopback by default: ``noqueue``); the time spent
  waiting behind a shaper (tbf, htb) or a full TX ring otherwise.
- ``xmit``: ``net:net_dev_start_xmit`` -> ``net:net_dev_xmit``: the driver's ``ndo_start_xmit()``
  until it has accepted the packet into its TX ring (not until the packet is on the wire).

Each is a log2 histogram in the kernel per (device's namespace, interface, stage), exported as
``kubeskoop.netiftxlat.duration`` (seconds, buckets 2^(i+1) ns, ``network.interface.name``,
``kubeskoop.latency.stage``), plus upstream's counters of packets over 100 ms per stage,
``kubeskoop.netiftxlat.qdiscslow100ms`` / ``netdevslow100ms`` (counted in the kernel).

Events (``event.probes``): ``kubeskoop.netiftxlat.qdisc`` / ``.xmit`` (upstream
``NETIFTXLAT_QDISC`` / ``NETIFTXLAT_XMIT``) for each packet over ``thresholdMs`` (default 100 ms,
upstream's) in a stage, rate-limited per namespace and stage, with the stage latencies, the
interface, the packet's size and CPU and, for qdisc waits, its addresses (an ``xmit`` event has
none: the driver may have freed the packet before ``net_dev_xmit`` fires).

Packets that never reach the driver (dropped by the qdisc, segmented by software GSO, purged with
the queue) are removed from the in-flight table by the ``skb:kfree_skb`` / ``skb:consume_skb``
hooks; what remains is bounded by the table, whose evictions are counted
(``kubeskoop.agent.bpf.inflight.evicted``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from otel_kubeskoop.bpf.attach import plans
from otel_kubeskoop.bpf.generated import netiftxlat as contract
from otel_kubeskoop.bpf.generated.netiftxlat import (
    HistsSlot,
    NetiftxlatEvent,
    NetiftxlatKey,
    NetiftxlatStage,
    NetiftxlatValue,
)
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import bpf_requires, decode_exact, event_type, ifname, record_event, tuple_attributes
from otel_kubeskoop.probes._latency import LatencyArgs, LatencyProbe, histogram, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import events as E
from otel_kubeskoop.vocabulary import instruments as I

OBJECT = "netiftxlat"

PLANS = plans(OBJECT, contract.OBJECT.programs)

INFLIGHT_MAP = "skbs"


#: kubeskoop.latency.stage values
STAGES = {NetiftxlatStage.NETIFTXLAT_QDISC: "qdisc", NetiftxlatStage.NETIFTXLAT_XMIT: "xmit"}
_EVENTS = {NetiftxlatStage.NETIFTXLAT_QDISC: E.NETIFTXLAT_QDISC,
           NetiftxlatStage.NETIFTXLAT_XMIT: E.NETIFTXLAT_XMIT}
_SLOW = {NetiftxlatStage.NETIFTXLAT_QDISC: I.NETIFTXLAT_QDISCSLOW100MS,
         NetiftxlatStage.NETIFTXLAT_XMIT: I.NETIFTXLAT_NETDEVSLOW100MS}


class NetiftxlatArgs(LatencyArgs):
    """``thresholdMs``: events for packets slower than this in a stage (upstream: 100 ms)."""

    threshold_ms: float = Field(100.0, alias="thresholdMs", gt=0, le=3_600_000)


def decode_netiftxlat(raw: bytes, clock_offset_ns: int = 0) -> Event:
    """One ``struct netiftxlat_event`` as an Event. Pure."""
    rec = decode_exact(NetiftxlatEvent, raw)
    stage = event_type(NetiftxlatStage, rec.hdr.type, "netiftxlat")
    attrs: list[tuple[str, Any]] = [
        (A.NETWORK_INTERFACE_NAME, ifname(rec.ifname, rec.ifindex)),
        (A.LATENCY, seconds(rec.latency_ns)),
        (A.LATENCY_STAGE, STAGES[stage]),
        (A.LATENCY_QDISC, seconds(rec.qdisc_ns)),
    ]
    if stage is NetiftxlatStage.NETIFTXLAT_XMIT:
        attrs.append((A.LATENCY_XMIT, seconds(rec.xmit_ns)))
    attrs += tuple_attributes(rec.tuple)
    attrs += [(A.PACKET_BYTES, rec.len), (A.CPU_LOGICAL_NUMBER, rec.cpu)]
    return record_event(_EVENTS[stage], rec.hdr, attrs, clock_offset_ns)


class NetiftxlatProbe(LatencyProbe):
    OBJECT = OBJECT
    PLANS = PLANS
    KEY = NetiftxlatKey
    SLOT = HistsSlot
    VALUE = NetiftxlatValue
    INFLIGHT_MAP = INFLIGHT_MAP
    ARGS = NetiftxlatArgs

    def samples_of(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        try:
            stage = NetiftxlatStage(key.stage)
        except ValueError:
            return []
        name = (A.NETWORK_INTERFACE_NAME, ifname(value.ifname, key.ifindex))
        return [
            Sample(I.NETIFTXLAT_DURATION, histogram(value.hist), netns,
                   (name, (A.LATENCY_STAGE, STAGES[stage]))),
            Sample(_SLOW[stage], value.hist.slow[0], netns, (name,)),
        ]

    def decode(self, raw: bytes) -> Event:
        return decode_netiftxlat(raw, self.clock_offset)


SPEC = ProbeSpec(
    name="netiftxlat",
    summary="Packet transmit latency per interface: qdisc wait and driver time (net:net_dev_* "
            "tracepoints), as histograms",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.HIGH,
    overhead_note="per transmitted packet a start slot written at net_dev_queue and read at "
                  "start and xmit, two histogram updates, and a slot check per freed packet "
                  "(kfree_skb/consume_skb), all inline loads and stores; one table read per "
                  "collection, series scale with interfaces",
    default_enabled=False,
    factory=NetiftxlatProbe,
    instruments=I.NETIFTXLAT,
    args=NetiftxlatArgs,
    requires=bpf_requires("tracepoints net:net_dev_queue, net:net_dev_start_xmit, net:net_dev_xmit, "
                          "skb:kfree_skb, skb:consume_skb (tp_btf, else classic)"),
)
