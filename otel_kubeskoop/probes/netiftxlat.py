# SPDX-License-Identifier: Apache-2.0
"""netiftxlat: how long packets wait to be transmitted, per namespace and interface, in two stages.

The interval of each stage, between two kernel tracepoints (``bpf/netiftxlat.bpf.h``):

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

from otel_kubeskoop.bpf.generated import netiftxlat as contract
from otel_kubeskoop.bpf.generated.netiftxlat import NetiftxlatEvent, NetiftxlatStage
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import bpf_requires
from otel_kubeskoop.probes._decode import event_type, ifname, record_event, tuple_attributes
from otel_kubeskoop.probes._latency import Latency, LatencyArgs, LatencyProbe, histogram, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

LATENCY_QDISC = "kubeskoop.latency.qdisc"  # double, s: a packet's wait in the qdisc
LATENCY_XMIT = "kubeskoop.latency.xmit"  # double, s: a packet's time in the driver's xmit

# Latency probes: log2 histograms kept in the kernel (bpf/include/latency.h), exported as OTel
# histograms in seconds (buckets 2^(i+1) ns), plus upstream's threshold counters, which the kernel
# counts (>10 ms and >100 ms are not bucket bounds).
_IF_STAGE = (A.NETWORK_INTERFACE_NAME, A.LATENCY_STAGE)
NETIFTXLAT_DURATION = InstrumentSpec(
    "kubeskoop.netiftxlat.duration", H, "s",
    "Packet transmit latency per interface, by stage: qdisc (net:net_dev_queue to "
    "net:net_dev_start_xmit, waiting in the qdisc) and xmit (net:net_dev_start_xmit to "
    "net:net_dev_xmit, in the driver's ndo_start_xmit)", _IF_STAGE)
NETIFTXLAT_QDISCSLOW100MS = InstrumentSpec(
    "kubeskoop.netiftxlat.qdiscslow100ms", C, "{packet}",
    "Packets that waited more than 100 ms in the qdisc (net_dev_queue to net_dev_start_xmit)",
    (A.NETWORK_INTERFACE_NAME,), key="qdisc", compat="kubeskoop_netiftxlat_qdiscslow100ms")
NETIFTXLAT_NETDEVSLOW100MS = InstrumentSpec(
    "kubeskoop.netiftxlat.netdevslow100ms", C, "{packet}",
    "Packets the driver took more than 100 ms to accept (net_dev_start_xmit to net_dev_xmit)",
    (A.NETWORK_INTERFACE_NAME,), key="xmit", compat="kubeskoop_netiftxlat_netdevslow100ms")
INSTRUMENTS = (NETIFTXLAT_DURATION, NETIFTXLAT_QDISCSLOW100MS, NETIFTXLAT_NETDEVSLOW100MS)

_EVENT_ATTRIBUTES = (A.NETWORK_INTERFACE_NAME, A.LATENCY, A.LATENCY_STAGE, LATENCY_QDISC,
               LATENCY_XMIT, *A.TUPLE, A.PACKET_BYTES, A.CPU_LOGICAL_NUMBER)
NETIFTXLAT_QDISC = EventSpec(
    "kubeskoop.netiftxlat.qdisc", "NETIFTXLAT_QDISC",
    "A packet waited in the interface's qdisc longer than the threshold (net_dev_queue to "
    "net_dev_start_xmit), with its addresses", _EVENT_ATTRIBUTES)
NETIFTXLAT_XMIT = EventSpec(
    "kubeskoop.netiftxlat.xmit", "NETIFTXLAT_XMIT",
    "The driver took longer than the threshold to accept a packet (net_dev_start_xmit to "
    "net_dev_xmit); the packet's qdisc wait too, not its addresses (it may be freed by then)",
    _EVENT_ATTRIBUTES)
EVENTS = (NETIFTXLAT_QDISC, NETIFTXLAT_XMIT)

INFLIGHT_MAP = "skbs"

#: kubeskoop.latency.stage values
STAGES = {NetiftxlatStage.NETIFTXLAT_QDISC: "qdisc", NetiftxlatStage.NETIFTXLAT_XMIT: "xmit"}
_EVENTS = {NetiftxlatStage.NETIFTXLAT_QDISC: NETIFTXLAT_QDISC,
           NetiftxlatStage.NETIFTXLAT_XMIT: NETIFTXLAT_XMIT}
_SLOW = {NetiftxlatStage.NETIFTXLAT_QDISC: NETIFTXLAT_QDISCSLOW100MS,
         NetiftxlatStage.NETIFTXLAT_XMIT: NETIFTXLAT_NETDEVSLOW100MS}


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
        (LATENCY_QDISC, seconds(rec.qdisc_ns)),
    ]
    if stage is NetiftxlatStage.NETIFTXLAT_XMIT:
        attrs.append((LATENCY_XMIT, seconds(rec.xmit_ns)))
    attrs += tuple_attributes(rec.tuple)
    attrs += [(A.PACKET_BYTES, rec.len), (A.CPU_LOGICAL_NUMBER, rec.cpu)]
    return record_event(_EVENTS[stage], rec.hdr, attrs, clock_offset_ns)


def samples_of(key: Any, value: Any, netns: int | None) -> list[Sample]:
    """The samples of one ``hists`` entry: its stage's histogram and slow counter."""
    try:
        stage = NetiftxlatStage(key.stage)
    except ValueError:
        return []
    name = (A.NETWORK_INTERFACE_NAME, ifname(value.ifname, key.ifindex))
    return [
        Sample(NETIFTXLAT_DURATION, histogram(value.hist), netns,
               (name, (A.LATENCY_STAGE, STAGES[stage]))),
        Sample(_SLOW[stage], value.hist.slow[0], netns, (name,)),
    ]


#: the probe: its object, in-flight table, samples and events
TABLE = Latency(contract.OBJECT, NetiftxlatArgs, INFLIGHT_MAP, samples_of, decode_netiftxlat)


class NetiftxlatProbe(LatencyProbe):
    TABLE = TABLE


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
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=NetiftxlatArgs,
    requires=bpf_requires("tracepoints net:net_dev_queue, net:net_dev_start_xmit, net:net_dev_xmit, "
                          "skb:kfree_skb, skb:consume_skb (tp_btf, else classic)"),
)
