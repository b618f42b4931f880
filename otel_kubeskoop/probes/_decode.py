# SPDX-License-Identifier: Apache-2.0
"""What the eBPF probes' decoders share: the running kernel's enum names, and the semconv
attributes of addresses, protocols and connection states.

Decoding is pure: ``decode_<probe>(raw, ...)`` turns the bytes of one ring-buffer record into an
:class:`~otel_kubeskoop.probe.Event` (:func:`record_event`), or raises
:class:`~otel_kubeskoop.bpf.records.DecodeError`, which the probe's
:class:`~otel_kubeskoop.probes._bpf.ObjectHandle` counts in ``ctx.decode_errors``. Names that
differ between kernels come in through :class:`KernelNames`, so that recorded records decode the
same in the unit tests.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf.generated.common import FlowTuple
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.probe import Event, ProbeContext, Unavailable
from otel_kubeskoop.vocabulary import attributes as A

__all__ = [
    "KernelNames",
    "TupleWords",
    "address",
    "clock_offset_ns",
    "connection_attributes",
    "decode_records",
    "emit_records",
    "event_type",
    "ifname",
    "kernel_names",
    "l3l4_attributes",
    "network_type",
    "new_event",
    "record_event",
    "tcp_state",
    "transport",
    "tuple_attributes",
]

log = logging.getLogger(__name__)

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


# --- names from the running kernel ---------------------------------------------------------

NO_REASON = 0xFFFFFFFF  # no drop reason has this value


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

    def reason_setting(self, name: str) -> int:
        """:meth:`reason_value` as a BPF setting: a value no reason has when this kernel lacks it."""
        value = self.reason_value(name)
        return NO_REASON if value is None else value

    def not_drop_settings(self) -> dict[str, int]:
        """The settings of a probe on the free hook: this kernel's values of the frees that are
        not drops (the hook's function fallbacks see them)."""
        return {"targ_reason_consumed": self.reason_setting("SKB_CONSUMED"),
                "targ_reason_not_dropped": self.reason_setting("SKB_NOT_DROPPED_YET")}

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


@functools.cache
def _names_of_this_kernel() -> KernelNames:
    return KernelNames.from_btf()


def kernel_names() -> KernelNames:
    """The running kernel's names, read from its BTF once per process.

    Raises :class:`~otel_kubeskoop.probe.Unavailable` on a kernel without readable BTF.
    """
    try:
        return _names_of_this_kernel()
    except FileNotFoundError:
        raise Unavailable(
            f"kernel without BTF ({btf_mod.VMLINUX_BTF} missing: CONFIG_DEBUG_INFO_BTF)"
        ) from None
    except (OSError, btf_mod.BTFError) as exc:
        raise Unavailable(f"kernel BTF unreadable: {exc}") from None


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


MAX_CACHED_WORDS = 4096  # distinct addresses (or states) kept; cleared when full


class TupleWords:
    """The attribute pairs of flow tuples and TCP states built once per distinct value (address
    strings, the type and transport pair, a state's word), for decoders that see tens of thousands
    of records a second; :func:`connection_attributes` of the same values, pair for pair. Kept as
    long as the probe runs: what they cache depends only on the raw values and the kernel's names
    (a new :class:`KernelNames` at start makes a new instance), never on pods."""

    def __init__(self, names: KernelNames) -> None:
        self._names = names
        self._kinds: dict[tuple[int, int], tuple[bool, Attrs]] = {}
        self._sources: dict[bytes, tuple[str, str]] = {}
        self._destinations: dict[bytes, tuple[str, str]] = {}
        self._states: dict[int, Attrs] = {}

    def connection(self, family: int, protocol: int, saddr: bytes, daddr: bytes, sport: int,
                   dport: int, state: int, tail: Attrs = ()) -> Attrs:
        """:func:`connection_attributes` of a tuple given as its fields (addresses as 16 bytes),
        then ``tail``, as one tuple."""
        kind = self._kinds.get((family, protocol))
        if kind is None:
            kind = self._kind(family, protocol)
        words = self._states.get(state)
        if words is None:
            words = self._state(state)
        ported, head = kind
        if not head:
            return (*words, *tail)
        if family == AF_INET:
            saddr, daddr = saddr[:4], daddr[:4]
        src = self._sources.get(saddr) or self._address(self._sources, A.SOURCE_ADDRESS, family, saddr)
        dst = self._destinations.get(daddr) or self._address(self._destinations, A.DESTINATION_ADDRESS, family, daddr)
        if ported:
            return (*head, src, (A.SOURCE_PORT, sport), dst, (A.DESTINATION_PORT, dport), *words, *tail)
        return (*head, src, dst, *words, *tail)

    def _kind(self, family: int, protocol: int) -> tuple[bool, Attrs]:
        kind = self._kinds[(family, protocol)] = (protocol in _PORTED, l3l4_attributes(family, protocol))
        return kind

    def _address(self, cache: dict[bytes, tuple[str, str]], key: str, family: int, raw: bytes) -> tuple[str, str]:
        if len(cache) >= MAX_CACHED_WORDS:
            cache.clear()
        pair = cache[raw] = (key, address(family, raw))
        return pair

    def _state(self, state: int) -> Attrs:
        if len(self._states) >= MAX_CACHED_WORDS:
            self._states.clear()
        word = self._names.tcp_state(state)
        words = self._states[state] = () if word is None else ((A.NETWORK_CONNECTION_STATE, word),)
        return words


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


def decode_records(decode: Callable[[bytes], Event], records: Iterable[bytes], ctx: ProbeContext,
                   probe: str) -> list[Event]:
    """The events of ``records``; a record ``decode`` refuses or fails on (any exception: a record
    the kernel should not have sent must not stop the others) is counted in ``ctx.decode_errors``
    (``kubeskoop.agent.events.lost``, reason ``decode_error``) and logged at debug level."""
    events = []
    append = events.append
    for raw in records:
        try:
            append(decode(raw))
        except Exception as exc:  # counted: every record is an event or a decode error
            ctx.decode_errors += 1
            log.debug("%s: undecodable record of %d bytes: %s: %s", probe, len(raw), type(exc).__name__, exc)
    return events


EMIT_CHUNK = 256  # records decoded and emitted at a time


def emit_records(decode: Callable[[bytes], Event], records: Sequence[bytes], ctx: ProbeContext,
                 probe: str) -> None:
    """Decode one ring-buffer read's ``records`` (:func:`decode_records`) and emit the events,
    :data:`EMIT_CHUNK` at a time: a read after a stall holds thousands, and keeping them all alive
    at once would let the garbage collector promote them to older generations, whose full
    collections (of the whole heap) then stall the pump long enough to fill the ring buffer."""
    for at in range(0, len(records), EMIT_CHUNK):
        events = decode_records(decode, records[at:at + EMIT_CHUNK], ctx, probe)
        if not events:
            continue
        if ctx.emit_batch is not None:
            ctx.emit_batch(events)
        else:
            for event in events:
                ctx.emit(event)


_NEW = object.__new__
_SET_NAME, _SET_TYPE, _SET_NETNS, _SET_ATTRIBUTES, _SET_BODY, _SET_TIMESTAMP = (
    getattr(Event, f.name).__set__ for f in dataclasses.fields(Event))


def new_event(name: str, upstream_type: str, netns: int | None, attributes: Attrs, body: str,
              timestamp_ns: int) -> Event:
    """``Event(name, upstream_type, netns, attributes, body, timestamp_ns)`` with its slots filled
    directly: 0.45 us where the frozen dataclass's ``__init__`` (an ``object.__setattr__`` per
    field) takes 0.8, a tenth of an event's CPU in the agent. The same object, field for field
    (``tests/unit/probes/test_batch_decode.py``)."""
    event = _NEW(Event)
    _SET_NAME(event, name)
    _SET_TYPE(event, upstream_type)
    _SET_NETNS(event, netns)
    _SET_ATTRIBUTES(event, attributes)
    _SET_BODY(event, body)
    _SET_TIMESTAMP(event, timestamp_ns)
    return event


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
    return new_event(spec.name, spec.upstream_type, None if node_scope else (hdr.netns or None),
                     tuple(attributes), "", hdr.ts_ns + clock_offset_ns)


