# SPDX-License-Identifier: Apache-2.0
"""packetloss: packets the kernel dropped, per namespace, by the kernel's own drop reason.

The ``skb:kfree_skb`` tracepoint (``bpf/packetloss.bpf.h``) counts every drop in the kernel per
(namespace, reason, family, IP protocol): ``kubeskoop.packetloss.total`` with
``kubeskoop.drop.reason`` (``NO_SOCKET``, ``NETFILTER_DROP``...), ``network.type`` and
``network.transport``; ``kubeskoop.packetloss.netfilter`` is its ``NETFILTER_DROP`` part. Upstream
sends every freed packet to user space, ignores the reason and counts per packet tuple; here
nothing crosses to user space but the counts. The kernel also counts IP drops per tuple (ports 0,
as upstream; an LRU of 10240 tuples, ``bpf/include/tuples.bpf.h``): ``kubeskoop.packetloss.tuples``
and ``.netfilter.tuples`` are upstream's series, served on the compat endpoint only.

What counts as a drop. The kernel calls ``kfree_skb_reason()`` (``kfree_skb()`` is the same with
reason ``NOT_SPECIFIED``) when it drops a packet and ``consume_skb()`` when it is done with one;
only the first fires ``skb:kfree_skb``. Since Linux 6.2 a caller can also pass ``SKB_CONSUMED`` to
``kfree_skb_reason()``; the kernel then fires ``skb:consume_skb`` instead (commit 0e84afe8ebfb,
"net: dropreason: add SKB_CONSUMED reason"). So every ``skb:kfree_skb`` is a drop by the kernel's
own contract, ``NOT_SPECIFIED`` included (a drop whose site has not been given a reason yet): it
is counted, under ``NOT_SPECIFIED``. ``SKB_CONSUMED`` and ``SKB_NOT_DROPPED_YET``, which the
function fallbacks (fentry/kprobe) can see, are filtered out in the kernel, by their values in
this kernel's BTF.

Events (``event.probes``): one ``kubeskoop.packetloss.drop`` per drop, rate-limited per namespace
in the kernel, with the reason, the location (``kubeskoop.drop.location``, ``tcp_v4_rcv+0x6c``
from ``/proc/kallsyms``), the packet's addresses, the interface and, with ``enableStack``, the
kernel stack (``kubeskoop.stack``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from otel_kubeskoop.bpf.generated import packetloss as contract
from otel_kubeskoop.bpf.generated.packetloss import PacketlossEvent, PacketlossEventType
from otel_kubeskoop.bpf.records import DecodeError, decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import (
    Counters,
    EventArgs,
    HandleProbe,
    ObjectHandle,
    TupleCounts,
    bpf_requires,
    small_ring_without_events,
)
from otel_kubeskoop.probes._decode import (
    KernelNames,
    kernel_names,
    l3l4_attributes,
    record_event,
    tuple_attributes,
)
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec

DROP_REASON = "kubeskoop.drop.reason"  # enum skb_drop_reason name without prefix: NO_SOCKET
DROP_LOCATION = "kubeskoop.drop.location"  # kernel symbol+offset: tcp_v4_rcv+0x1a2
STACK = "kubeskoop.stack"  # kernel stack, innermost first, as symbol+offset strings

# eBPF probes: counters aggregated in the kernel per namespace (bpf/<probe>.bpf.c "counters").
# Upstream's metric word is "total", so the Prometheus form of kubeskoop.packetloss.total is
# upstream's kubeskoop_packetloss_total (Prometheus' translator adds _total only once).
_DROP = (DROP_REASON, A.NETWORK_TYPE, A.NETWORK_TRANSPORT)
_L3L4 = (A.NETWORK_TYPE, A.NETWORK_TRANSPORT)
PACKETLOSS_TOTAL = InstrumentSpec(
    "kubeskoop.packetloss.total", C, "{packet}",
    "Packets the kernel dropped (skb:kfree_skb), by the kernel's drop reason; frees that are not "
    "drops (SKB_CONSUMED) are not counted", _DROP, key="drop")
PACKETLOSS_NETFILTER = InstrumentSpec(
    "kubeskoop.packetloss.netfilter", C, "{packet}",
    "Packets dropped by netfilter (iptables/nftables rules): the NETFILTER_DROP subset of "
    "kubeskoop.packetloss.total", _L3L4, key="NETFILTER_DROP")
# Upstream's series of the same drops: per packet tuple (ports 0) with k8s_node, on the compat
# endpoint only (bpf/packetloss.bpf.h "tuples").
_TUPLE_COMPAT = (*I.TUPLE_COMPAT, (A.K8S_NODE_NAME, "k8s_node"))
PACKETLOSS_TUPLES = InstrumentSpec(
    "kubeskoop.packetloss.tuples", C, "{packet}",
    "Packets the kernel dropped, by the packet's addresses and protocol (compat endpoint only)",
    A.TUPLE, key="tuples", compat="kubeskoop_packetloss_total", compat_labels=_TUPLE_COMPAT, otlp=False)
PACKETLOSS_NETFILTER_TUPLES = InstrumentSpec(
    "kubeskoop.packetloss.netfilter.tuples", C, "{packet}",
    "Packets netfilter dropped, by the packet's addresses and protocol (compat endpoint only)",
    A.TUPLE, key="tuples_netfilter", compat="kubeskoop_packetloss_netfilter", compat_labels=_TUPLE_COMPAT,
    otlp=False)
INSTRUMENTS = (PACKETLOSS_TOTAL, PACKETLOSS_NETFILTER, PACKETLOSS_TUPLES, PACKETLOSS_NETFILTER_TUPLES)

PACKETLOSS_DROP = EventSpec(
    "kubeskoop.packetloss.drop", "PacketLoss",
    "The kernel dropped a packet: its reason, where (kernel symbol), the packet's addresses, the "
    "interface, and the kernel stack when enableStack is set",
    (DROP_REASON, DROP_LOCATION, *A.TUPLE, A.NETWORK_INTERFACE_NAME, STACK))
EVENTS = (PACKETLOSS_DROP,)


NETFILTER_DROP = "NETFILTER_DROP"


class PacketlossArgs(EventArgs):
    """``enableStack`` as upstream (default false), plus the event rate limit."""

    enable_stack: bool = Field(False, alias="enableStack")


# Frames of the tracing machinery itself, on top of every stack bpf_get_stack() takes from a
# tracepoint: the BPF program ("bpf_prog_<tag>_<name> [bpf]"), the BTF tracepoint's run function,
# the classic tracepoint's perf glue. Left out, so a stack starts where the kernel freed the packet.
_TRACING_FRAMES = ("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "trace_call_bpf", "perf_trace_",
                   "perf_syscall_", "__traceiter_")


def kernel_stack(addresses: Any, kallsyms: Any) -> tuple[str, ...]:
    """``symbol+0xoff`` per frame, innermost first, without the leading tracing frames."""
    if kallsyms is None:
        return tuple(f"{a:#x}" for a in addresses)
    frames = [kallsyms.symbolize(a) for a in addresses]
    first = 0
    while first < len(frames) - 1 and frames[first].startswith(_TRACING_FRAMES):
        first += 1
    return tuple(frames[first:])


def decode_packetloss(raw: bytes, names: KernelNames, clock_offset_ns: int = 0,
                      kallsyms: Any = None) -> Event:
    """One ``struct packetloss_event`` as an Event. Pure: names and symbols are passed in."""
    rec = decode_exact(PacketlossEvent, raw)
    if rec.hdr.type != PacketlossEventType.PACKETLOSS_EVENT_DROP:
        raise DecodeError(f"packetloss: unknown event type {rec.hdr.type}")
    attrs: list[tuple[str, Any]] = [(DROP_REASON, names.drop_reason(rec.reason))]
    if rec.location and kallsyms is not None:
        attrs.append((DROP_LOCATION, kallsyms.symbolize(rec.location)))
    elif rec.location:
        attrs.append((DROP_LOCATION, f"{rec.location:#x}"))
    attrs += tuple_attributes(rec.tuple)
    if rec.ifname:
        attrs.append((A.NETWORK_INTERFACE_NAME, rec.ifname.decode(errors="replace")))
    depth = min(rec.stack_depth, len(rec.stack))
    if depth:
        attrs.append((STACK, kernel_stack(rec.stack[:depth], kallsyms)))
    return record_event(PACKETLOSS_DROP, rec.hdr, attrs, clock_offset_ns)


def samples(counts: Mapping[int | None, Mapping[Any, int]], names: KernelNames) -> list[Sample]:
    """The drops ``{netns or None: {(reason, family, protocol): value}}`` by reason name (values
    this kernel names alike add up) and, for NETFILTER_DROP, by network type and transport."""
    out: list[Sample] = []
    for netns, keys in counts.items():
        total: dict[tuple[tuple[str, Any], ...], int] = defaultdict(int)
        netfilter: dict[tuple[tuple[str, Any], ...], int] = defaultdict(int)
        for (reason, family, protocol), value in keys.items():
            name = names.drop_reason(reason)
            l3l4 = l3l4_attributes(family, protocol)
            total[((DROP_REASON, name), *l3l4)] += value
            if name == NETFILTER_DROP:
                netfilter[l3l4] += value
        out += [Sample(PACKETLOSS_TOTAL, v, netns, attrs) for attrs, v in total.items()]
        out += [Sample(PACKETLOSS_NETFILTER, v, netns, attrs) for attrs, v in netfilter.items()]
    return out


class PacketlossProbe(HandleProbe):
    def __init__(self, args: PacketlossArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else PacketlossArgs()
        self.names = KernelNames()
        self.kallsyms: Any = None  # bpf.kallsyms.Kallsyms, read on the first location to name
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.counters = Counters(self.bpf)
        self.tuples = (TupleCounts(self.bpf, "tuples", PACKETLOSS_TUPLES),
                       TupleCounts(self.bpf, "tuples_netfilter", PACKETLOSS_NETFILTER_TUPLES))

    def settings(self) -> dict[str, int | bool]:
        """The ``const volatile`` settings: this kernel's values of the frees that are not drops
        and of NETFILTER_DROP, and whether events carry the stack."""
        return {
            **self.names.not_drop_settings(),
            "targ_reason_netfilter": self.names.reason_setting(f"SKB_DROP_REASON_{NETFILTER_DROP}"),
            "targ_stack": self.args.enable_stack,
        }

    def start(self) -> None:
        from otel_kubeskoop.bpf.kallsyms import shared_kallsyms

        self.names = kernel_names()
        if self.bpf.ctx.events_enabled:
            self.kallsyms = shared_kallsyms()
        self.bpf.start(self.settings(), events=self.args,
                       max_entries=small_ring_without_events(self.bpf.ctx))

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None:
            return []
        out = samples(self.counters.read(), self.names) + self.counters.self_samples()
        for counts in self.tuples:  # upstream's per-tuple view, for the compat endpoint
            out += counts.samples()
        return out

    def decode(self, raw: bytes) -> Event:
        return decode_packetloss(raw, self.names, self.bpf.clock_offset, self.kallsyms)


SPEC = ProbeSpec(
    name="packetloss",
    summary="Packets the kernel dropped, per namespace, by the kernel's drop reason (skb:kfree_skb)",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.MEDIUM,
    overhead_note="one hash and one LRU update (per tuple, for the compat endpoint) per dropped "
                  "packet in the kernel (every kfree_skb, filtered in the kernel); with events, one ring-buffer record per drop up to eventRate "
                  "per namespace; one map read per collection",
    default_enabled=False,
    factory=PacketlossProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=PacketlossArgs,
    requires=bpf_requires("tracepoint skb:kfree_skb (tp_btf, Linux 6.10+, else classic)"),
)
