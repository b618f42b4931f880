# SPDX-License-Identifier: Apache-2.0
"""kernellatency: time TCP packets spend in the kernel's network stack, per namespace, received
and sent.

Upstream times ``ip_rcv`` -> ``ip_local_deliver_finish`` and ``__ip_queue_xmit`` ->
``ip_finish_output2`` with kprobes on functions that 6.x kernels inline or rename (#293). This
probe times the nearest intervals that tracepoints bound (``bpf/kernellatency.bpf.h``):

- ``receive`` (upstream RX): from ``net:netif_receive_skb`` (the device hands the packet to the
  stack; for a packet received again, by a bridge say, the last time) to ``tcp:tcp_probe``
  (``tcp_rcv_established()``: the packet reaches its established TCP socket, after IP,
  netfilter, routing, TCP demultiplexing and, when the application held the socket, the socket
  backlog). TCP only: a UDP datagram's arrival at its socket has no tracepoint, and packets of
  connections being set up (SYN, SYN-ACK) end elsewhere.
- ``transmit`` (upstream TX): from TCP handing a data segment to IP (``__tcp_transmit_skb()``
  stamps ``skb->tstamp`` with the segment's departure time, ``CLOCK_MONOTONIC``, taken from the
  clock TCP refreshes when it starts sending) to ``net:net_dev_queue`` (IP output, netfilter,
  routing and the neighbour layer are done; the device's qdisc comes next). TCP data segments
  only (pure ACKs may carry an older stamp); segments paced into the future (fq) are skipped.
  The kernel carries the start in the packet, so transmit needs no in-flight state.

The fentry/kprobe candidates (for kernels with them and without these tracepoints) time
upstream's receive start ``ip_rcv`` (IPv4 only) and ``tcp_rcv_established``.

Metrics: ``kubeskoop.kernellatency.duration``, a log2 histogram in the kernel per (socket's
namespace, direction), exported as an OTel histogram in seconds (buckets 2^(i+1) ns,
``network.io.direction``); upstream's counters ``rxslow``/``txslow`` (over 10 ms) and
``rxslow100ms``/``txslow100ms`` (over 100 ms), counted in the kernel (upstream never increments
its ``*100ms`` ones, and counts only while its event probe runs).

Events (``event.probes``): ``kubeskoop.kernellatency.rxslow`` / ``.txslow`` (upstream
``RXKERNEL_SLOW`` / ``TXKERNEL_SLOW``) for each packet over ``thresholdMs`` (default 10 ms,
upstream's), rate-limited per namespace and direction in the kernel, with the packet's addresses,
interface and length, the latency and the two attach points that bound it.

Received packets being timed live in a bounded in-flight table (one slot per packet address,
``bpf/include/latency.bpf.h``); one that never reaches an established socket (dropped, forwarded,
a handshake packet) is removed when it is freed (``skb:kfree_skb``, ``skb:consume_skb``); one
freed without a tracepoint (``__kfree_skb()``, deferred frees) is replaced when its memory comes
back as a new packet, or evicted by a packet that needs its slot, and counted
(``kubeskoop.agent.bpf.inflight.evicted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from otel_kubeskoop.bpf.generated import kernellatency as contract
from otel_kubeskoop.bpf.generated.kernellatency import KernellatencyDirection, KernellatencyEvent
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._decode import event_type, ifname, record_event, tuple_attributes
from otel_kubeskoop.probes._latency import Directions, Endpoints, Histograms, LatencyArgs, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

# A log2 histogram per (namespace, direction); the upstream counters count intervals above the
# kernel's fixed thresholds, per namespace.
_DIR = (A.NETWORK_IO_DIRECTION,)
KERNELLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.kernellatency.duration", H, "s",
    "Time TCP packets spent in the kernel's network stack: receive, from net:netif_receive_skb to "
    "the established socket (tcp:tcp_probe); transmit, from TCP handing a data segment to IP "
    "(its departure stamp, skb->tstamp) to net:net_dev_queue", _DIR)
KERNELLATENCY_COUNTERS = tuple(
    InstrumentSpec(f"kubeskoop.kernellatency.{word}", C, "{packet}", desc, key=key,
                   compat=f"kubeskoop_kernellatency_{word}")
    for word, key, desc in [
        ("rxslow", "rx.0", "Received TCP packets that took more than 10 ms from the device to their socket (includes rxslow100ms)"),
        ("rxslow100ms", "rx.1", "Received TCP packets that took more than 100 ms from the device to their socket"),
        ("txslow", "tx.0", "TCP data segments that took more than 10 ms from TCP to the device queue (includes txslow100ms)"),
        ("txslow100ms", "tx.1", "TCP data segments that took more than 100 ms from TCP to the device queue"),
    ]
)
INSTRUMENTS = (KERNELLATENCY_DURATION,) + KERNELLATENCY_COUNTERS

_EVENT_ATTRIBUTES = (*A.TUPLE, A.NETWORK_INTERFACE_NAME, A.NETWORK_IO_DIRECTION, A.LATENCY,
              A.LATENCY_START, A.LATENCY_END, A.PACKET_BYTES)
KERNELLATENCY_RXSLOW = EventSpec(
    "kubeskoop.kernellatency.rxslow", "RXKERNEL_SLOW",
    "A received TCP packet took longer than the threshold from the device to its socket",
    _EVENT_ATTRIBUTES)
KERNELLATENCY_TXSLOW = EventSpec(
    "kubeskoop.kernellatency.txslow", "TXKERNEL_SLOW",
    "A TCP data segment took longer than the threshold from TCP to the device queue", _EVENT_ATTRIBUTES)
EVENTS = (KERNELLATENCY_RXSLOW, KERNELLATENCY_TXSLOW)

INFLIGHT_MAP = "skbs"

RX, TX = KernellatencyDirection.KERNELLATENCY_RX, KernellatencyDirection.KERNELLATENCY_TX
#: network.io.direction of each direction
DIRECTIONS = {RX: "receive", TX: "transmit"}
_EVENTS = {RX: KERNELLATENCY_RXSLOW, TX: KERNELLATENCY_TXSLOW}
BY_DIRECTION = Directions(
    KernellatencyDirection, DIRECTIONS, KERNELLATENCY_DURATION,
    {RX: KERNELLATENCY_COUNTERS[:2], TX: KERNELLATENCY_COUNTERS[2:]})
#: the start of the transmit interval, which no hook marks: the stamp TCP puts in the packet
TX_START = "skb->tstamp (__tcp_transmit_skb)"


class KernellatencyArgs(LatencyArgs):
    """``thresholdMs``: events for packets slower than this (upstream: 10 ms)."""

    threshold_ms: float = Field(10.0, alias="thresholdMs", gt=0, le=3_600_000)


def endpoints(chosen: Mapping[str, Any]) -> Endpoints:
    """direction -> (start, end) of the interval, from ``BPFObject.chosen``."""
    return {
        RX: (str(chosen.get("rx", "rx")), str(chosen.get("deliver", "deliver"))),
        TX: (TX_START, str(chosen.get("queue", "queue"))),
    }


def decode_kernellatency(raw: bytes, points: Endpoints, clock_offset_ns: int = 0) -> Event:
    """One ``struct kernellatency_event`` as an Event. Pure."""
    rec = decode_exact(KernellatencyEvent, raw)
    direction = event_type(KernellatencyDirection, rec.hdr.type, "kernellatency")
    start, end = points.get(direction, ("", ""))
    attrs: list[tuple[str, Any]] = list(tuple_attributes(rec.tuple))
    if rec.ifname or rec.ifindex:
        attrs.append((A.NETWORK_INTERFACE_NAME, ifname(rec.ifname, rec.ifindex)))
    attrs += [
        (A.NETWORK_IO_DIRECTION, DIRECTIONS[direction]),
        (A.LATENCY, seconds(rec.latency_ns)),
        (A.LATENCY_START, start),
        (A.LATENCY_END, end),
        (A.PACKET_BYTES, rec.len),
    ]
    return record_event(_EVENTS[direction], rec.hdr, attrs, clock_offset_ns)


class KernellatencyProbe(HandleProbe):
    def __init__(self, args: KernellatencyArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else KernellatencyArgs()
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.hists = Histograms(self.bpf, INFLIGHT_MAP)
        #: direction -> (start, end) attach points in use (set once attached)
        self.points = endpoints({})

    def _attached(self, chosen: Mapping[str, Any]) -> None:
        self.points = endpoints(chosen)

    def start(self) -> None:
        self.bpf.start(self.args.settings, events=self.args, attached=self._attached)

    def collect(self) -> list[Sample]:
        return self.hists.collect(BY_DIRECTION.samples)

    def decode(self, raw: bytes) -> Event:
        return decode_kernellatency(raw, self.points, self.bpf.clock_offset)


SPEC = ProbeSpec(
    name="kernellatency",
    summary="Time TCP packets spend in the kernel's stack: device to socket (receive), TCP to "
            "device queue (transmit), as histograms per namespace",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.HIGH,
    overhead_note="five tracepoints on the packet path (receive, TCP delivery, device queue, "
                  "free, consume): per TCP packet a start slot written and read and a histogram "
                  "updated, all inline loads and stores; one table read per collection, two "
                  "series per namespace",
    default_enabled=False,
    factory=KernellatencyProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=KernellatencyArgs,
    requires=bpf_requires("tracepoints net:netif_receive_skb, tcp:tcp_probe (skb and socket: 6.10+ "
                          "classic, any tp_btf), net:net_dev_queue, skb:kfree_skb, skb:consume_skb; "
                          "else fentry or kprobes on ip_rcv, tcp_rcv_established, __dev_queue_xmit, "
                          "sk_skb_reason_drop, consume_skb"),
)
