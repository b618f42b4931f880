# SPDX-License-Identifier: Apache-2.0
"""flow: bytes and packets per IP flow on each pod's interfaces, IPv4 and IPv6.

**Where it attaches.** Two TC programs (``bpf/flow.bpf.c``), as direct-action ``cls_bpf``
filters on the clsact qdisc of every interface but ``lo`` **inside each pod's network
namespace** (``eth0`` and any other a CNI added), plus the host namespace's interfaces named by
``interfaceName`` (upstream's argument: an exact name or ``prefix*``; none by default). Ingress
counts what the pod receives, egress what it sends. Why inside the namespace rather than on the
host side of the pod's veth:

- the namespace is the attribution: every packet is counted under the namespace of the interface
  that saw it (``skb->dev->nd_net``), with no veth-peer or routing lookups, and it works for any
  CNI, veth or not (ipvlan, macvlan, SR-IOV, netkit have no host-side peer to attach to);
- same-node pod-to-pod traffic (which upstream, on one host NIC, never sees) is counted once in
  each pod: as egress in the sender's namespace and as ingress in the receiver's. Each pod sees
  each of its packets once per direction; a node-wide sum over pods counts same-node traffic
  twice (once per end), which is what "per pod" means;
- the cost: the agent enters each pod namespace (a short-lived thread, ``setns(2)``) to attach,
  and a pod with ``CAP_NET_ADMIN`` could remove the filters (the probe re-checks them every
  minute and attaches again).

**Attachments follow the pods.** Each collection compares each namespace's interfaces
(``/proc/<pid>/net/dev``) with what is attached: new namespaces and interfaces get the filters,
vanished ones are forgotten (the kernel removed their qdiscs with them), and every minute the
filters are checked and put back if missing. Filters sit at priority ``0x4b53`` on each hook,
each run of the agent at a handle of its own (the id of its ``flow_ingress`` program), named by
libbpf after their program (``flow_ingress:[id]``). Two agents on a node (the old and the new
one of a rolling update) thus both count every packet and never take each other's filters off; a
filter of another run whose program no live process holds (its agent was killed) is removed and
counted. A clsact qdisc is created, with otel-kubeskoop's marker, when the interface had none,
and removed by whichever agent takes the last filter off it (or ``otel-kubeskoop cleanup``);
a qdisc without the marker is never removed (``otel_kubeskoop/bpf/tc_owner.py``).

**Counting.** Each IP packet adds its length (the frame with its link-layer header) and its
segment count to an LRU hash in the kernel keyed by (namespace, direction, family, protocol,
source, destination[, ports]); ports only with ``enablePortInLabel`` (upstream's argument,
default off). The hash (``maxFlows`` entries, default 65536) evicts the least recently used key
when full; the kernel counts every insert, so evictions are known exactly by difference
(``kubeskoop.agent.bpf.map.evicted``; what an evicted key counted since the last collection is
lost). Keys idle for ``idleTimeout`` seconds are deleted by the agent, and their series retired.

**Export.** ``kubeskoop.flow.bytes`` and ``kubeskoop.flow.packets`` per pod namespace with
``network.io.direction`` (receive = ingress, transmit = egress), ``network.type``,
``network.transport``, ``source.address``, ``destination.address`` (+ ``source.port``,
``destination.port``). At most ``maxSeries`` flows per namespace (default 1000) get series of
their own; later flows add to one overflow series per direction (``kubeskoop.flow.overflow``
true, no addresses) and are counted (``kubeskoop.flow.overflow.flows``).
"""

from __future__ import annotations

import fnmatch
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from otel_kubeskoop.bpf.attach import unplanned
from otel_kubeskoop.bpf.generated import flow as contract
from otel_kubeskoop.bpf.generated.flow import FlowDirection, FlowStat
from otel_kubeskoop.bpf.tc_attach import Attacher
from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source, Unavailable
from otel_kubeskoop.probes._bpf import HandleProbe, ObjectHandle
from otel_kubeskoop.probes._decode import address, network_type, transport
from otel_kubeskoop.probes._reconcile import NetnsReconciler
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import C, U, InstrumentSpec

FLOW_OVERFLOW = "kubeskoop.flow.overflow"  # bool: the series holds the flows past the cap

# flow: per pod namespace and IP flow, from TC programs on the pod's interfaces (ports only with
# enablePortInLabel). A namespace's series are capped; flows past the cap add to one overflow
# series per direction (kubeskoop.flow.overflow=true), and are counted.
_FLOW = (A.NETWORK_IO_DIRECTION, A.NETWORK_TYPE, A.NETWORK_TRANSPORT, A.SOURCE_ADDRESS,
         A.SOURCE_PORT, A.DESTINATION_ADDRESS, A.DESTINATION_PORT, FLOW_OVERFLOW)
FLOW_BYTES = InstrumentSpec(
    "kubeskoop.flow.bytes", C, "By",
    "Bytes of IP packets on the pod's interfaces (frames with their link-layer header), by "
    "direction (receive: tc ingress, transmit: tc egress) and flow", _FLOW, key="bytes",
    compat="kubeskoop_flow_bytes", compat_labels=I.TUPLE_COMPAT)
FLOW_PACKETS = InstrumentSpec(
    "kubeskoop.flow.packets", C, "{packet}",
    "IP packets on the pod's interfaces, by direction and flow (a GSO packet counts as its "
    "segments)", _FLOW, key="packets", compat="kubeskoop_flow_packets",
    compat_labels=I.TUPLE_COMPAT)
FLOW_OVERFLOW_FLOWS = InstrumentSpec(
    "kubeskoop.flow.overflow.flows", C, "{flow}",
    "Flows counted in the namespace's overflow series because it already had maxSeries series")
FLOW_INTERFACES = InstrumentSpec(
    "kubeskoop.flow.interfaces", U, "{interface}",
    "Interfaces of the namespace with the probe's TC programs attached")
INSTRUMENTS = (FLOW_BYTES, FLOW_PACKETS, FLOW_OVERFLOW_FLOWS, FLOW_INTERFACES)


log = logging.getLogger(__name__)

FLOWS_MAP = "flows"
STATS_MAP = "flow_stats"
#: TC hook -> its program: the object's programs in no attach plan, flow_<hook>
PROGRAMS = {p.removeprefix("flow_"): p for p in unplanned(contract.OBJECT)}
DIRECTIONS = {FlowDirection.FLOW_INGRESS: "receive", FlowDirection.FLOW_EGRESS: "transmit"}
#: the priority of this probe's filters on every hook ("KS"); each run's handle is its own
TC_PRIORITY = 0x4B53
#: seconds between checks that the filters of an unchanged namespace are still there
REVERIFY_SECONDS = 60.0

_KEY = struct.Struct("<IIBBH16s16sHH")
_VALUE = struct.Struct("<QQ")
_PORTED = frozenset((6, 17, 132, 136))

Attrs = tuple[tuple[str, Any], ...]


class FlowArgs(BaseModel):
    """Upstream's ``interfaceName`` and ``enablePortInLabel``, and this probe's bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    interface_name: str = Field(
        "", alias="interfaceName",
        description="host namespace interfaces to attach to as well: a name, or prefix*")
    enable_port_in_label: bool = Field(False, alias="enablePortInLabel")
    max_flows: int = Field(65536, alias="maxFlows", ge=256, le=1 << 22)
    max_series: int = Field(1000, alias="maxSeries", ge=1, le=1_000_000)
    idle_timeout: float = Field(300.0, alias="idleTimeout", gt=0, le=86400 * 7)

    def host_match(self, name: str) -> bool:
        pattern = self.interface_name
        if not pattern:
            return False
        return fnmatch.fnmatchcase(name, pattern) if pattern.endswith("*") else name == pattern


# --- keys -> series (pure) -------------------------------------------------------------------


NetnsId = tuple[int, int]  # (inode, low 32 bits of the never-reused namespace id)


def key_netns(raw: bytes) -> NetnsId:
    """The namespace of one raw ``struct flow_key``: (inode, cookie)."""
    return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:8], "little")


def flow_attributes(raw: bytes, ports: bool) -> Attrs:
    """The series attributes of one raw ``struct flow_key``."""
    _netns, _cookie, direction, protocol, family, saddr, daddr, sport, dport = _KEY.unpack(raw)
    kind = network_type(family)
    attrs: list[tuple[str, Any]] = [(A.NETWORK_IO_DIRECTION, DIRECTIONS.get(direction, str(direction)))]
    if kind is None:
        return tuple(attrs)
    ported = ports and protocol in _PORTED
    attrs += [(A.NETWORK_TYPE, kind), (A.NETWORK_TRANSPORT, transport(protocol)),
              (A.SOURCE_ADDRESS, address(family, saddr))]
    if ported:
        attrs.append((A.SOURCE_PORT, sport))
    attrs.append((A.DESTINATION_ADDRESS, address(family, daddr)))
    if ported:
        attrs.append((A.DESTINATION_PORT, dport))
    return tuple(attrs)


def overflow_attributes(raw: bytes) -> Attrs:
    direction = raw[8]
    return ((A.NETWORK_IO_DIRECTION, DIRECTIONS.get(direction, str(direction))),
            (FLOW_OVERFLOW, True))


@dataclass(slots=True)
class _Entry:
    """One kernel key: the series it adds to and the values last read."""

    series: Attrs
    bytes: int = 0
    packets: int = 0
    changed: float = 0.0  # when its values last moved (monotonic seconds)


@dataclass(slots=True)
class _Series:
    bytes: int = 0
    packets: int = 0
    changed: float = 0.0
    overflow: bool = False


@dataclass
class _NetnsFlows:
    entries: dict[bytes, _Entry] = field(default_factory=dict)
    series: dict[Attrs, _Series] = field(default_factory=dict)
    own_series: int = 0  # series that are not overflow series
    overflowed: int = 0  # flows sent to the overflow series


class FlowTable:
    """Cumulative per-series totals from successive reads of the kernel's ``flows`` map.

    Each read gives every live key's counts since the key was inserted; a key seen for the first
    time (or whose counts went down: evicted and inserted again between reads) adds all of it.
    Keys missing from a read were evicted or deleted: what they added stays in their series.
    Namespaces are (inode, cookie) pairs; which of them are live is the probe's namespace
    reconciler's call (:meth:`forget` drops one).
    """

    def __init__(self, max_series: int, idle_seconds: float, ports: bool) -> None:
        self.max_series = max_series
        self.idle_seconds = idle_seconds
        self.ports = ports
        self.namespaces: dict[NetnsId, _NetnsFlows] = {}

    def update(self, rows: Iterable[tuple[bytes, int, int]], now: float) -> list[bytes]:
        """Add one read of the map; returns the keys idle for ``idle_seconds`` (to delete from
        the kernel map; they are forgotten here, and series left without keys are retired once
        idle as long)."""
        seen: dict[NetnsId, set[bytes]] = {}
        for raw, nbytes, npackets in rows:
            netns = key_netns(raw)
            ns = self.namespaces.get(netns)
            if ns is None:
                ns = self.namespaces[netns] = _NetnsFlows()
            seen.setdefault(netns, set()).add(raw)
            entry = ns.entries.get(raw)
            if entry is None:
                entry = ns.entries[raw] = _Entry(self._series_for(ns, raw), changed=now)
                dbytes, dpackets = nbytes, npackets
            elif nbytes < entry.bytes or npackets < entry.packets:
                dbytes, dpackets = nbytes, npackets
            else:
                dbytes, dpackets = nbytes - entry.bytes, npackets - entry.packets
            entry.bytes, entry.packets = nbytes, npackets
            series = ns.series[entry.series]
            if dbytes or dpackets:
                entry.changed = series.changed = now
                series.bytes += dbytes
                series.packets += dpackets
        idle: list[bytes] = []
        for netns, ns in self.namespaces.items():
            live = seen.get(netns, set())
            for raw in [r for r in ns.entries if r not in live]:
                del ns.entries[raw]  # evicted, or deleted by us
            for raw, entry in list(ns.entries.items()):
                if now - entry.changed >= self.idle_seconds:
                    idle.append(raw)
                    del ns.entries[raw]
            used = {e.series for e in ns.entries.values()}
            for attrs, series in list(ns.series.items()):
                if not series.overflow and attrs not in used and now - series.changed >= self.idle_seconds:
                    del ns.series[attrs]
                    ns.own_series -= 1
        return idle

    def _series_for(self, ns: _NetnsFlows, raw: bytes) -> Attrs:
        attrs = flow_attributes(raw, self.ports)
        if attrs in ns.series:
            return attrs
        if ns.own_series >= self.max_series:
            attrs = overflow_attributes(raw)
            ns.overflowed += 1
            if attrs not in ns.series:
                ns.series[attrs] = _Series(overflow=True)
            return attrs
        ns.series[attrs] = _Series()
        ns.own_series += 1
        return attrs

    def forget(self, netns: NetnsId) -> list[bytes]:
        """Drop a namespace; returns its keys (to delete from the kernel map)."""
        ns = self.namespaces.pop(netns, None)
        return list(ns.entries) if ns is not None else []

    def samples(self, netns_id: NetnsId) -> list[Sample]:
        ns = self.namespaces.get(netns_id)
        if ns is None:
            return []
        netns = netns_id[0]
        out = []
        for attrs, series in ns.series.items():
            out.append(Sample(FLOW_BYTES, series.bytes, netns, attrs))
            out.append(Sample(FLOW_PACKETS, series.packets, netns, attrs))
        out.append(Sample(FLOW_OVERFLOW_FLOWS, ns.overflowed, netns))
        return out


# --- the probe ------------------------------------------------------------------------------


class FlowProbe(HandleProbe):
    def __init__(self, args: FlowArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else FlowArgs()
        self.ctx = ctx
        self.bpf = ObjectHandle(contract.OBJECT, ctx)
        self.attacher: Attacher | None = None
        self.table = FlowTable(self.args.max_series, self.args.idle_timeout,
                               self.args.enable_port_in_label)
        self.deleted = 0  # keys this probe deleted from the kernel map
        self._evicted = 0
        self._reconciler: NetnsReconciler[NetnsId] = NetnsReconciler(lambda netns: netns)

    def _wanted(self, ns: Any, names: set[str]) -> set[str]:
        if ns.is_host:
            return {n for n in names if n != "lo" and self.args.host_match(n)}
        return names - {"lo"}

    def start(self) -> None:
        from otel_kubeskoop.bpf import tc

        try:
            self.bpf.start({"targ_ports": self.args.enable_port_in_label},
                           max_entries={FLOWS_MAP: self.args.max_flows})
        except Unavailable as exc:
            raise Unavailable(f"{exc}\n(flow needs Linux 6.2+ for the bpf_cast_to_kern_ctx kfunc, "
                              "and TC classifier programs)") from None
        try:
            fds = self.bpf.programs()
            ids = {d: tc.program_id(fds[p]) for d, p in PROGRAMS.items()}
            self.attacher = Attacher(
                self.ctx.name, PROGRAMS, {d: fds[p] for d, p in PROGRAMS.items()}, ids,
                self._wanted, handle=ids["ingress"], priority=TC_PRIORITY,
                reverify=REVERIFY_SECONDS, proc_root=self.ctx.proc_root,
            )
            for exc in self.attacher.sync(self.ctx.cycle.namespaces):
                self.ctx.report(exc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        attacher = self.attacher
        if attacher is not None:
            for exc in attacher.detach_all(self.ctx.cycle.namespaces):
                log.warning("flow: detaching: %s", exc)
                self.ctx.report(exc)
            if not attacher.state:  # else kept: what is still attached is not forgotten
                self.attacher = None
        self.bpf.stop()

    def stats(self) -> dict[str, int]:
        values = dict(self.bpf.map(STATS_MAP).items())
        return {s.name.removeprefix("FLOW_STAT_").lower(): values.get(s.value, 0)
                for s in FlowStat if s is not FlowStat.FLOW_STAT__MAX}

    def read(self) -> list[tuple[bytes, int, int]]:
        """Every (raw key, bytes, packets) of the kernel map (raw: unpacked with struct, faster
        than the ctypes mirrors for a map of up to maxFlows keys)."""
        out = []
        for raw_key, raw_value in self.bpf.obj.map(FLOWS_MAP).items():
            nbytes, npackets = _VALUE.unpack(raw_value)
            out.append((raw_key, nbytes, npackets))
        return out

    def _delete(self, keys: Iterable[bytes]) -> None:
        flows = self.bpf.obj.map(FLOWS_MAP)
        for raw in keys:
            self.deleted += flows.delete(raw)

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None or self.attacher is None:
            return []
        known = self.ctx.cycle.namespaces
        for exc in self.attacher.sync(known):
            self.ctx.report(exc)
        stats = self.stats()
        rows = self.read()
        self._delete(self.table.update(rows, time.monotonic()))
        self._evicted = max(self._evicted, stats["inserted"] - self.deleted - len(rows))

        out: list[Sample] = []
        verdict = self._reconciler.reconcile(list(self.table.namespaces), known)
        for netns in verdict.gone:
            self._delete(self.table.forget(netns))
        for netns, _ in verdict.live:
            out += self.table.samples(netns)
        for netns in known:
            n = self.attacher.interfaces(netns)
            if n:
                out.append(Sample(FLOW_INTERFACES, n, netns))
        probe = (A.PROBE, self.ctx.name)
        out.append(Sample(I.AGENT_BPF_MAP_EVICTED, self._evicted, None, (probe, (A.BPF_MAP, FLOWS_MAP))))
        out.append(Sample(I.AGENT_BPF_MAP_FULL, stats["failed"], None,
                          (probe, (A.BPF_MAP, FLOWS_MAP))))
        return out


SPEC = ProbeSpec(
    name="flow",
    summary="Bytes and packets per IP flow (IPv4 and IPv6) on every pod's interfaces, from TC "
            "programs inside each pod namespace: same-node pod-to-pod traffic included",
    kinds=frozenset({Kind.METRICS}),
    source=Source.BPF,
    scope=Scope.FLOW,
    overhead=Overhead.MEDIUM,
    overhead_note="per packet on a pod interface, a header parse and a hash update (atomic adds) "
                  "in the kernel; per collection one read of the flow map (up to maxFlows keys) "
                  "and a short thread entering the namespaces that changed; series scale with "
                  "flows, capped at maxSeries per pod",
    default_enabled=False,
    factory=FlowProbe,
    instruments=INSTRUMENTS,
    args=FlowArgs,
    requires=("kernel BTF (/sys/kernel/btf/vmlinux)", "Linux 6.2+ (bpf_cast_to_kern_ctx kfunc)",
              "TC clsact qdisc and cls_bpf (CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF)",
              "CAP_NET_ADMIN, CAP_SYS_ADMIN (setns into pod namespaces), CAP_BPF+CAP_PERFMON"),
)
