# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the eBPF probes.

:class:`ObjectProbe` is what every eBPF probe does with its object (load, attach, pump events,
count losses, close); :class:`BPFProbe` adds the counters of packetloss, tcpreset and tcpretrans,
:class:`~otel_kubeskoop.probes._latency.LatencyProbe` the histograms of the latency probes. The
functions here are the pieces every decoder uses (attributes, event types, the Event itself).

Each counting probe's object (``bpf/<probe>.bpf.c``) has:

- ``counters``: a bounded HASH of ``struct <probe>_key`` -> ``__u64``, incremented in the kernel and
  never reset: :meth:`BPFProbe.collect` reads it whole each cycle and reports the values as they are
  (cumulative kernel counters, which the pipeline expects; a probe restart starts them again at 0,
  which the pipeline treats like any counter reset). ``counters_full`` counts increments that
  found the hash full (``kubeskoop.agent.bpf.map.full``).
- ``events``: the ring buffer, read only when the config asks this probe for events; ``losses``
  counts what the kernel refused to send (rate limit, full ring buffer), reported as
  ``kubeskoop.agent.events.lost``.

Keys carry the namespace's inode and the low 32 bits of its never-reused id (``netns_cookie``,
``bpf/include/netns.bpf.h``): the kernel hands a freed inode number to the next namespace, so when
two ids share an inode only the newest one's counters are reported and the older namespace's keys
are deleted at once (otherwise a new pod would inherit a dead one's counts).

Namespaces that went away: their keys are deleted from ``counters`` once the namespace has been
missing from the agent's namespace scan (``ctx.cycle.namespaces``) at two collections in a row,
so the map holds live namespaces only. The grace of one cycle keeps a namespace created between
the scan and the read. Keys of a missing namespace are not reported (it has no resource any
more); the pipeline exports a vanished resource once more with its last values.

Decoding is pure: ``decode_<probe>(raw, names, clock_offset_ns, kallsyms)`` turns the bytes of one
ring-buffer record into an :class:`~otel_kubeskoop.probe.Event` (:func:`record_event`), or raises
:class:`~otel_kubeskoop.bpf.layouts.DecodeError`; the probe counts that in ``ctx.decode_errors``.
"""

from __future__ import annotations

import abc

import ctypes
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf.layouts import DecodeError, FlowTuple
from otel_kubeskoop.probe import Event, ProbeContext, Sample, Unavailable
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)

__all__ = [
    "BPFProbe",
    "EventArgs",
    "KernelNames",
    "ObjectProbe",
    "address",
    "bpf_requires",
    "connection_attributes",
    "event_type",
    "ifname",
    "network_type",
    "record_event",
    "tcp_state",
    "transport",
    "tuple_attributes",
    "type_samples",
]

COUNTERS_MAP = "counters"
COUNTERS_FULL_MAP = "counters_full"
EVENTS_MAP = "events"
LOSSES_MAP = "losses"
#: collections a namespace may be missing from the scan before its counters are deleted
ABSENT_COLLECTIONS = 2

#: what every eBPF probe requires besides its attach points (:func:`bpf_requires`)
REQUIRES_BTF = "kernel BTF (/sys/kernel/btf/vmlinux)"
REQUIRES_RINGBUF = "BPF ring buffer (Linux 5.8+) for events"
REQUIRES_CAPS = "CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN"

AF_INET, AF_INET6 = 2, 10
_FAMILY = {AF_INET: "ipv4", AF_INET6: "ipv6"}

# network.transport: the IANA protocol keyword, lower-cased, for the protocols one sees; any
# other protocol number as its decimal string. ICMPv6 is "ipv6-icmp" (IANA's keyword).
_TRANSPORT = {
    0: "hopopt", 1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 33: "dccp", 41: "ipv6",
    43: "ipv6-route", 44: "ipv6-frag", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp",
    60: "ipv6-opts", 103: "pim", 112: "vrrp", 132: "sctp", 136: "udplite",
}
_PORTED = frozenset((6, 17, 132, 136))

# network.connection.state: semconv values where semconv names the state, else the kernel's name
# lower-cased without TCP_ (bound_inactive). TCP_NEW_SYN_RECV is how Linux keeps a connection in
# SYN-RECEIVED (a request socket; TCP_SYN_RECV is left to Fast Open), so both are syn_received.
_SEMCONV_STATE = {
    "TCP_ESTABLISHED": "established", "TCP_SYN_SENT": "syn_sent", "TCP_SYN_RECV": "syn_received",
    "TCP_NEW_SYN_RECV": "syn_received",
    "TCP_FIN_WAIT1": "fin_wait_1", "TCP_FIN_WAIT2": "fin_wait_2", "TCP_TIME_WAIT": "time_wait",
    "TCP_CLOSE": "closed", "TCP_CLOSE_WAIT": "close_wait", "TCP_LAST_ACK": "last_ack",
    "TCP_LISTEN": "listen", "TCP_CLOSING": "closing",
}

Attrs = tuple[tuple[str, Any], ...]
_E = TypeVar("_E", bound=Enum)


class EventArgs(BaseModel):
    """Event settings every eBPF probe takes (config ``event.probes[].args``).

    The kernel sends at most ``eventRate`` events per second per (namespace, event type), with
    bursts of up to ``eventBurst``; the rest are counted (``kubeskoop.agent.events.lost``,
    reason ``rate_limited``), never silently dropped. ``eventRate: 0`` turns the limit off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event_rate: int = Field(100, alias="eventRate", ge=0, le=1_000_000)
    event_burst: int = Field(200, alias="eventBurst", ge=0, le=1_000_000)


# --- names from the running kernel ---------------------------------------------------------


@dataclass(frozen=True)
class KernelNames:
    """The running kernel's enum names the decoders need (value -> kernel name), from its BTF.

    Tests build one by hand; :meth:`from_btf` reads ``/sys/kernel/btf/vmlinux``.
    """

    drop_reasons: Mapping[int, str] = field(default_factory=dict)  # SKB_DROP_REASON_NO_SOCKET...
    drop_subsystems: Mapping[int, str] = field(default_factory=dict)  # SKB_DROP_REASON_SUBSYS_*
    rst_reasons: Mapping[int, str] = field(default_factory=dict)  # SK_RST_REASON_* (6.10+)
    tcp_states: Mapping[int, str] = field(default_factory=dict)  # TCP_ESTABLISHED...

    @classmethod
    def from_btf(cls, btf: btf_mod.BTF | None = None) -> KernelNames:
        btf = btf or btf_mod.vmlinux_btf()

        def optional(read: Callable[[], Mapping[int, str]]) -> Mapping[int, str]:
            try:
                return read()
            except KeyError:  # an older kernel without that enum
                return {}

        return cls(
            drop_reasons=optional(lambda: btf_mod.skb_drop_reasons(btf)),
            drop_subsystems=optional(lambda: btf.enum_values("skb_drop_reason_subsys")),
            rst_reasons=optional(lambda: btf_mod.sk_rst_reasons(btf)),
            tcp_states=optional(lambda: btf_mod.tcp_states(btf)),
        )

    def reason_value(self, name: str) -> int | None:
        """The value of drop reason ``name`` (``SKB_CONSUMED``) in this kernel, or None."""
        for value, member in self.drop_reasons.items():
            if member == name:
                return value
        return None

    def drop_reason(self, value: int) -> str:
        """The kernel's drop reason name without its ``SKB_DROP_REASON_`` prefix, upper case as
        the kernel's own ``skb:kfree_skb`` tracepoint prints it: ``NO_SOCKET``, ``NETFILTER_DROP``.

        Since Linux 6.4 a non-zero top half names a subsystem (``enum skb_drop_reason_subsys``)
        whose reasons live in its own enum: ``OPENVSWITCH:3``. A value this kernel does not name
        (never expected): ``UNKNOWN:<value>``.
        """
        name = self.drop_reasons.get(value)
        if name is not None:
            return name.removeprefix("SKB_DROP_REASON_").removeprefix("SKB_")
        subsystem = value >> 16
        if subsystem and subsystem in self.drop_subsystems:
            prefix = self.drop_subsystems[subsystem].removeprefix("SKB_DROP_REASON_SUBSYS_")
            return f"{prefix}:{value & 0xFFFF}"
        return f"UNKNOWN:{value}"

    def rst_reason(self, value: int) -> str | None:
        """``enum sk_rst_reason`` name without ``SK_RST_REASON_`` (``NO_SOCKET``), or None."""
        name = self.rst_reasons.get(value)
        if name is None:
            return None
        return name.removeprefix("SK_RST_REASON_")

    def tcp_state(self, value: int) -> str | None:
        """``network.connection.state`` of a TCP state value; None for 0 (no socket)."""
        if not value:
            return None
        name = self.tcp_states.get(value)
        if name is None:
            return f"unknown:{value}"
        return tcp_state(name)


def tcp_state(kernel_name: str) -> str:
    """Semconv ``network.connection.state`` for a kernel TCP state name (``TCP_SYN_RECV``)."""
    return _SEMCONV_STATE.get(kernel_name) or kernel_name.removeprefix("TCP_").lower()


def network_type(family: int) -> str | None:
    return _FAMILY.get(family)


def transport(protocol: int) -> str:
    return _TRANSPORT.get(protocol) or str(protocol)


def address(family: int, raw: Iterable[int]) -> str:
    data = bytes(raw)
    if family == AF_INET:
        return socket.inet_ntop(socket.AF_INET, data[:4])
    return socket.inet_ntop(socket.AF_INET6, data[:16])


def l3l4_attributes(family: int, protocol: int) -> Attrs:
    """``network.type`` and ``network.transport`` of an IP packet; nothing when not IP."""
    kind = _FAMILY.get(family)
    if kind is None:
        return ()
    return ((A.NETWORK_TYPE, kind), (A.NETWORK_TRANSPORT, transport(protocol)))


def tuple_attributes(t: FlowTuple) -> Attrs:
    """Semconv attributes of a ``struct flow_tuple``; nothing when it is not IP."""
    kind = _FAMILY.get(t.family)
    if kind is None:
        return ()
    out: list[tuple[str, Any]] = [
        (A.NETWORK_TYPE, kind),
        (A.NETWORK_TRANSPORT, transport(t.protocol)),
        (A.SOURCE_ADDRESS, address(t.family, t.saddr)),
    ]
    ported = t.protocol in _PORTED
    if ported:
        out.append((A.SOURCE_PORT, t.sport))
    out.append((A.DESTINATION_ADDRESS, address(t.family, t.daddr)))
    if ported:
        out.append((A.DESTINATION_PORT, t.dport))
    return tuple(out)


def decode_exact(cls: type[Any], raw: bytes) -> Any:
    """The record ``raw`` holds, which must be exactly one ``cls``."""
    size = ctypes.sizeof(cls)
    if len(raw) != size:
        raise DecodeError(f"{cls.__name__}: record of {len(raw)} bytes, expected {size}")
    return cls.from_buffer_copy(raw)


def clock_offset_ns() -> int:
    """Add to a ``bpf_ktime_get_ns()`` (CLOCK_MONOTONIC) timestamp to get Unix time."""
    return time.time_ns() - time.monotonic_ns()


def ifname(raw: bytes, ifindex: int) -> str:
    """The interface name the kernel gave, else ``if<index>``."""
    return raw.decode(errors="replace") if raw else f"if{ifindex}"


def connection_attributes(t: FlowTuple, names: KernelNames, state: int) -> list[tuple[str, Any]]:
    """:func:`tuple_attributes` of a connection, then its ``network.connection.state`` (``state``:
    the kernel's TCP state value, 0 for none) when there is one."""
    attrs = list(tuple_attributes(t))
    word = names.tcp_state(state)
    if word is not None:
        attrs.append((A.NETWORK_CONNECTION_STATE, word))
    return attrs


def event_type(enum: type[_E], value: int, probe: str) -> _E:
    """The member of ``enum`` that a record's event type ``value`` is; DecodeError if none."""
    try:
        return enum(value)
    except ValueError:
        raise DecodeError(f"{probe}: unknown event type {value}") from None


def record_event(spec: Any, hdr: Any, attributes: Iterable[tuple[str, Any]], clock_offset_ns: int,
                 *, node_scope: bool = False) -> Event:
    """The Event of one ring-buffer record: named by ``spec`` (one of the probe's ``EVENTS``), in the
    namespace of its ``struct event_hdr`` (none for a node-scope probe), at the header's
    ``bpf_ktime_get_ns()`` time plus ``clock_offset_ns``."""
    return Event(
        name=spec.name,
        upstream_type=spec.upstream_type,
        netns=None if node_scope else (hdr.netns or None),
        attributes=tuple(attributes),
        timestamp_ns=hdr.ts_ns + clock_offset_ns,
    )


def type_samples(counts: Mapping[int | None, Mapping[Any, int]], instrument: Any, attribute: str,
                 words: Mapping[int, str]) -> list[Sample]:
    """Samples of counters keyed by a type alone (tcpreset, tcpretrans): ``attribute`` is the
    type's word in ``words`` (``unknown:<value>`` for a type this agent does not know)."""
    return [Sample(instrument, value, netns, ((attribute, words.get(kind, f"unknown:{kind}")),))
            for netns, keys in counts.items() for (kind,), value in keys.items()]


class TupleCounts:
    """A probe's counts per tuple (``bpf/include/tuples.bpf.h``), read as node-scope samples of a
    compat-only ``instrument``, and how many tuples its LRU has evicted."""

    def __init__(self, map_name: str, instrument: Any) -> None:
        self.map_name = map_name
        self.instrument = instrument
        self.evicted = 0

    def samples(self, obj: Any, probe: str) -> list[Sample]:
        entries = obj.map(self.map_name, FlowTuple, ctypes.c_uint64).items()
        inserted = obj.map(f"{self.map_name}_inserted", ctypes.c_uint32, ctypes.c_uint64).lookup(0) or 0
        self.evicted = max(self.evicted, inserted - len(entries))
        out = [Sample(self.instrument, value, None, tuple_attributes(key)) for key, value in entries]
        out.append(Sample(I.AGENT_BPF_MAP_EVICTED, self.evicted, None, ((A.PROBE, probe), (A.BPF_MAP, self.map_name))))
        return out


def bpf_requires(*hooks: str) -> tuple[str, ...]:
    """A BPF probe's ``ProbeSpec.requires``: kernel BTF, ``hooks`` (what it attaches to), the ring
    buffer for events and the capabilities, in that order."""
    return (REQUIRES_BTF, *hooks, REQUIRES_RINGBUF, REQUIRES_CAPS)


def newest_cookies(keys: Iterable[Any]) -> dict[int, int]:
    """netns inode -> the newest ``netns_cookie`` among ``keys``: the namespace that has the inode
    now (the kernel gives a freed namespace's inode to the next one)."""
    newest: dict[int, int] = {}
    for key in keys:
        if key.netns_cookie > newest.get(key.netns, -1):
            newest[key.netns] = key.netns_cookie
    return newest


def still_absent(absent: Mapping[int, int], missing: Iterable[int]) -> dict[int, int]:
    """netns -> consecutive collections missing from the scan, for the namespaces ``missing`` now
    that have been missing fewer than ABSENT_COLLECTIONS times (``absent``: the same, from the
    last collection). The other ``missing`` ones are gone: their keys are to be deleted."""
    out: dict[int, int] = {}
    for netns in missing:
        misses = absent.get(netns, 0) + 1
        if misses < ABSENT_COLLECTIONS:
            out[netns] = misses
    return out


# --- the probes ----------------------------------------------------------------------------


class ObjectProbe(abc.ABC):
    """What every eBPF probe does with its object (:class:`BPFProbe`,
    :class:`~otel_kubeskoop.probes._latency.LatencyProbe`): open it with the event settings and
    the probe's own ``const volatile`` ones, attach, pump its ring buffer into ``ctx.emit`` while
    events are on, count what the kernel could not send, close it.

    Subclasses set ``OBJECT`` and ``PLANS`` and implement :meth:`decode`; the other hooks are
    optional.
    """

    OBJECT: ClassVar[str]  # bpf/<OBJECT>.bpf.c
    PLANS: ClassVar[tuple[Any, ...]]  # AttachPlans

    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.args = args if args is not None else self.default_args()
        self.ctx = ctx
        self.obj: Any = None  # BPFObject while started
        self.clock_offset = 0
        #: seconds from start() called to attached
        self.start_seconds: float | None = None

    @classmethod
    def default_args(cls) -> Any:
        return EventArgs()

    # --- subclass hooks ----------------------------------------------------------------------

    def before_open(self) -> None:
        """Called first by :meth:`start`; may raise :class:`Unavailable`."""

    def event_rodata(self) -> dict[str, int | bool]:
        """The ``const volatile`` event settings (``targ_emit``, the rate limit)."""
        return {
            "targ_emit": self.ctx.events_enabled,
            "targ_rate_per_sec": self.args.event_rate,
            "targ_burst": self.args.event_burst,
        }

    def rodata(self) -> dict[str, int | bool]:
        """``const volatile`` settings beyond the event ones."""
        return {}

    def max_entries(self) -> dict[str, int]:
        """Map sizes to set before load."""
        return {}

    def features(self) -> Any:
        """The kernel features the loader chooses attach points with (None: the running kernel's)."""
        return None

    def check_chosen(self, obj: Any) -> None:
        """Called once attached; may raise to refuse a combination of attach points."""

    def start_events(self, obj: Any) -> None:
        """With events on: pump the ring buffer (``events``) into ``ctx.emit``."""
        self.clock_offset = clock_offset_ns()
        ring = obj.ringbuf(EVENTS_MAP, self._on_record)
        self.ctx.watch(ring.fileno(), ring.consume)

    @abc.abstractmethod
    def decode(self, raw: bytes) -> Event:
        """Implemented by each probe."""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        from otel_kubeskoop.bpf.loader import BPFObject
        from otel_kubeskoop.bpf.objects import object_path

        began = time.perf_counter()
        self.before_open()
        features = self.features()
        rodata = self.event_rodata()
        rodata.update(self.rodata())
        try:
            obj = BPFObject(object_path(self.OBJECT), self.PLANS, rodata=rodata,
                            max_entries=self.max_entries(), features=features)
            obj.start()
        except OSError as exc:  # libbpf.so.1 itself not loadable
            raise Unavailable(f"libbpf.so.1 not loadable ({exc}); Debian package libbpf1") from None
        self.obj = obj
        try:
            self.check_chosen(obj)
            if self.ctx.events_enabled:
                self.start_events(obj)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - began
        log.debug("%s attached in %.0f ms: %s", self.OBJECT, self.start_seconds * 1000,
                  ", ".join(f"{hook}: {point}" for hook, point in obj.chosen.items()))

    def stop(self) -> None:
        obj, self.obj = self.obj, None
        if obj is not None:
            obj.close()

    def bpf_programs(self) -> dict[str, int]:
        """Loaded programs and their fds, for per-program statistics (config ``bpfStats``)."""
        return self.obj.program_fds() if self.obj is not None else {}

    @property
    def chosen(self) -> dict[str, Any]:
        """hook -> attach point in use (empty when not started)."""
        return dict(self.obj.chosen) if self.obj is not None else {}

    # --- events ------------------------------------------------------------------------------

    def _on_record(self, raw: bytes) -> None:
        try:
            event = self.decode(raw)
        except (DecodeError, ValueError) as exc:
            self.ctx.decode_errors += 1
            log.debug("%s: undecodable record: %s", self.OBJECT, exc)
            return
        self.ctx.emit(event)

    # --- self-telemetry ----------------------------------------------------------------------

    def losses(self) -> dict[str, int]:
        """Events the kernel refused to send, by reason (ring_buffer_full, rate_limited)."""
        if self.obj is None:
            return {}
        losses = dict(self.obj.map(LOSSES_MAP, ctypes.c_uint32, ctypes.c_uint64).items())
        return {"ring_buffer_full": losses.get(0, 0), "rate_limited": losses.get(1, 0)}

    def map_full_sample(self, full_map: str, counted_map: str) -> Sample:
        """``kubeskoop.agent.bpf.map.full`` of ``counted_map``: the increments that found it full,
        as its one-entry counter ``full_map`` has them."""
        full = self.obj.map(full_map, ctypes.c_uint32, ctypes.c_uint64).lookup(0) or 0
        return Sample(I.AGENT_BPF_MAP_FULL, full, None,
                      ((A.PROBE, self.ctx.name), (A.BPF_MAP, counted_map)))

    def loss_samples(self) -> list[Sample]:
        """``kubeskoop.agent.events.lost`` by reason, with events on (none without)."""
        if not self.ctx.events_enabled:
            return []
        probe = (A.PROBE, self.ctx.name)
        return [Sample(I.AGENT_EVENTS_LOST, n, None, (probe, (A.LOSS_REASON, reason)))
                for reason, n in self.losses().items()]


class BPFProbe(ObjectProbe):
    """An eBPF probe counting in the kernel: load its object, read its counters, pump its events.

    Subclasses set the class attributes and implement :meth:`rodata`, :meth:`samples` and
    :meth:`decode`.
    """

    KEY: ClassVar[type[ctypes.Structure]]  # struct <probe>_key (has a netns member)

    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        super().__init__(args, ctx)
        self.names = KernelNames()
        self.kallsyms: Any = None  # bpf.kallsyms.Kallsyms, read on the first location to name
        self._absent: dict[int, int] = {}  # netns -> consecutive collections missing
        self._keys: dict[int, list[Any]] = {}  # netns -> its raw keys, from the last read

    # --- subclass hooks ----------------------------------------------------------------------

    @abc.abstractmethod
    def samples(self, counts: Mapping[int | None, Mapping[Any, int]]) -> list[Sample]:
        """Samples from ``{netns or None: {key tuple: value}}`` (keys without their netns)."""

    def key_fields(self, key: Any) -> tuple[Any, ...]:
        """The key's fields other than the namespace's (netns, netns_cookie)."""
        return tuple(getattr(key, name) for name, *_ in key._fields_
                     if name not in ("netns", "netns_cookie"))

    # --- lifecycle ---------------------------------------------------------------------------

    def before_open(self) -> None:
        try:
            self.names = KernelNames.from_btf()
        except FileNotFoundError:
            raise Unavailable(
                f"kernel without BTF ({btf_mod.VMLINUX_BTF} missing: CONFIG_DEBUG_INFO_BTF)"
            ) from None
        except (OSError, btf_mod.BTFError) as exc:
            raise Unavailable(f"kernel BTF unreadable: {exc}") from None

    def max_entries(self) -> dict[str, int]:
        # Without events nothing is written to the ring buffer: one page instead of 256 KiB of
        # locked kernel memory.
        return {} if self.ctx.events_enabled else {EVENTS_MAP: os.sysconf("SC_PAGE_SIZE")}

    def start_events(self, obj: Any) -> None:
        from otel_kubeskoop.bpf.kallsyms import Kallsyms

        self.kallsyms = self.kallsyms or Kallsyms()
        super().start_events(obj)

    # --- metrics -----------------------------------------------------------------------------

    def read_counters(self) -> dict[int, dict[tuple[Any, ...], int]]:
        """The kernel counters as {netns: {key fields: value}}, of the newest namespace that had
        each inode; the keys of older ones (dead: their inode was given to a new namespace) are
        deleted."""
        counters = self.obj.map(COUNTERS_MAP, self.KEY, ctypes.c_uint64)
        entries = counters.items()
        newest = newest_cookies(key for key, _ in entries)
        out: dict[int, dict[tuple[Any, ...], int]] = {}
        self._keys = {}
        for key, value in entries:
            if key.netns_cookie != newest[key.netns]:
                counters.delete(key)
                log.debug("%s: deleted a counter of namespace %d/%d, whose inode was reused",
                          self.OBJECT, key.netns, key.netns_cookie)
                continue
            out.setdefault(key.netns, {})[self.key_fields(key)] = value
            self._keys.setdefault(key.netns, []).append(key)
        return out

    def _prune(self, by_netns: dict[int, dict[tuple[Any, ...], int]]) -> dict[int | None, dict[tuple[Any, ...], int]]:
        """Keep the namespaces the scan knows (and 0, unknown, as node scope); delete the keys of
        namespaces missing ABSENT_COLLECTIONS times in a row."""
        known = self.ctx.cycle.namespaces
        kept: dict[int | None, dict[tuple[Any, ...], int]] = {}
        if not known:  # no scan yet: report everything, delete nothing
            return {(netns or None): keys for netns, keys in by_netns.items()}
        absent = still_absent(self._absent, [n for n in by_netns if n and n not in known])
        for netns, keys in by_netns.items():
            if not netns:
                kept[None] = keys
            elif netns in known:
                kept[netns] = keys
            elif netns not in absent:
                self._delete_netns(netns)
        self._absent = absent
        return kept

    def _delete_netns(self, netns: int) -> None:
        counters = self.obj.map(COUNTERS_MAP, self.KEY, ctypes.c_uint64)
        for key in self._keys.get(netns, ()):
            counters.delete(key)
        log.debug("%s: deleted the counters of vanished namespace %d", self.OBJECT, netns)

    def collect(self) -> list[Sample]:
        if self.obj is None:
            return []
        counts = self._prune(self.read_counters())
        out = self.samples(counts)
        out.append(self.map_full_sample(COUNTERS_FULL_MAP, COUNTERS_MAP))
        out += self.loss_samples()
        return out
