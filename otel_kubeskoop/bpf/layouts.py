# SPDX-License-Identifier: Apache-2.0
"""ctypes mirrors of the kernel <-> user-space types in ``bpf/include/*.h`` and ``bpf/*.h``.

One class per shared struct or enum, with the C name and C member names, written once here
(style.md rule 6). ``tests/privileged/bpf/test_layouts_btf.py`` checks every class listed in
:data:`STRUCTS` and :data:`ENUMS` against the BTF of the compiled objects: size and every field
offset, every enum member and value. Records are little-endian (x86_64, arm64).
"""

from __future__ import annotations

import ctypes
import enum
import time
from typing import Any, TypeVar

__all__ = [
    "ENUMS",
    "STRUCTS",
    "DecodeError",
    "EventHeader",
    "EventLossReason",
    "FlowTuple",
    "PacketlossEvent",
    "PacketlossEventType",
    "PacketlossKey",
    "SelftestEvent",
    "SelftestEventType",
    "SelftestKey",
    "TcpresetEvent",
    "TcpresetKey",
    "TcpresetType",
    "TcpretransEvent",
    "TcpretransKey",
    "TcpretransType",
    # latency probes
    "LATENCY_SLOTS",
    "BiolatencyEvent",
    "BiolatencyEventType",
    "BiolatencyFlag",
    "BiolatencyKey",
    "BiolatencyOp",
    "HistSlotState",
    "InflightStat",
    "hist_slot",
    "LatencyHist",
    "NetiftxlatEvent",
    "NetiftxlatKey",
    "NetiftxlatStage",
    "NetiftxlatValue",
    "SoftirqEvent",
    "SoftirqEventType",
    "SoftirqKey",
    "SoftirqStage",
    "VirtcmdlatencyEvent",
    "VirtcmdlatencyEventType",
    "VirtcmdlatencyKey",
    "VirtcmdlatencyValue",
    # socketlatency, kernellatency, flow
    "FlowDirection",
    "FlowKey",
    "FlowStat",
    "FlowValue",
    "KernellatencyDirection",
    "KernellatencyEvent",
    "KernellatencyKey",
    "SocketlatencyDirection",
    "SocketlatencyEvent",
    "SocketlatencyKey",
    "decode",
    "ktime_to_unix_ns",
    "to_dict",
]

_T = TypeVar("_T", bound=ctypes.Structure)

_u8, _u16, _u32, _u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class DecodeError(ValueError):
    """A ring-buffer record too short for the struct it should hold."""


# --- bpf/include/events.h -------------------------------------------------------------------


class EventHeader(ctypes.LittleEndianStructure):
    """``struct event_header``: first member of every ring-buffer record."""

    _fields_ = [
        ("ts_ns", _u64),  # bpf_ktime_get_ns(), CLOCK_MONOTONIC
        ("netns", _u32),  # network namespace inode; 0 when unknown
        ("type", _u16),  # the probe's event type
        ("aux", _u16),  # probe-specific
    ]


class EventLossReason(enum.IntEnum):
    """``enum event_loss_reason``: index into a probe's per-CPU ``losses`` array."""

    EVENT_LOSS_RINGBUF_FULL = 0
    EVENT_LOSS_RATE_LIMITED = 1
    EVENT_LOSS__MAX = 2


# --- bpf/include/tuple.h ---------------------------------------------------------------------


class FlowTuple(ctypes.LittleEndianStructure):
    """``struct flow_tuple``: a packet's or a connection's addresses, embedded in records."""

    _fields_ = [
        ("saddr", _u8 * 16),  # network byte order; IPv4 in the first 4 bytes
        ("daddr", _u8 * 16),
        ("family", _u16),  # AF_INET (2), AF_INET6 (10); 0 when not IP
        ("protocol", _u16),  # IPPROTO_*; 0 when unknown
        ("sport", _u16),  # host byte order; 0 without ports
        ("dport", _u16),
    ]


# --- bpf/selftest.h -------------------------------------------------------------------------


class SelftestEventType(enum.IntEnum):
    """``enum selftest_event_type``."""

    SELFTEST_EVENT_RESET = 1
    SELFTEST_EVENT_DROP = 2


class SelftestKey(ctypes.LittleEndianStructure):
    """``struct selftest_key``: key of the selftest ``counts`` map."""

    _fields_ = [("netns", _u32), ("type", _u32)]


class SelftestEvent(ctypes.LittleEndianStructure):
    """``struct selftest_event``: a selftest ring-buffer record."""

    _fields_ = [
        ("hdr", EventHeader),
        ("pid", _u32),
        ("drop_reason", _u32),
        ("family", _u16),
        ("sport", _u16),
        ("dport", _u16),
        ("protocol", _u16),
        ("saddr", _u8 * 16),
        ("daddr", _u8 * 16),
        ("comm", ctypes.c_char * 16),
    ]


# --- bpf/packetloss.h -----------------------------------------------------------------------

PACKETLOSS_MAX_STACK = 32


class PacketlossEventType(enum.IntEnum):
    """``enum packetloss_event_type``."""

    PACKETLOSS_EVENT_DROP = 1


class PacketlossKey(ctypes.LittleEndianStructure):
    """``struct packetloss_key``: key of the packetloss ``counters`` map."""

    _fields_ = [
        ("netns", _u32),
        ("netns_cookie", _u32),  # low 32 bits of the namespace's never-reused id
        ("reason", _u32),
        ("family", _u16),
        ("protocol", _u16),
    ]


class PacketlossEvent(ctypes.LittleEndianStructure):
    """``struct packetloss_event``: one drop."""

    _fields_ = [
        ("hdr", EventHeader),
        ("tuple", FlowTuple),
        ("location", _u64),  # kernel address that freed the packet; 0 when unknown
        ("reason", _u32),  # enum skb_drop_reason of the running kernel
        ("stack_depth", _u32),
        ("ifname", ctypes.c_char * 16),
        ("stack", _u64 * PACKETLOSS_MAX_STACK),
    ]


# --- bpf/tcpreset.h -------------------------------------------------------------------------

TCPRESET_REASON_NONE = 0xFFFFFFFF


class TcpresetType(enum.IntEnum):
    """``enum tcpreset_type``."""

    TCPRESET_NOSOCK = 1
    TCPRESET_PROCESS = 2
    TCPRESET_ACTIVE = 3
    TCPRESET_RECEIVE = 4


class TcpresetKey(ctypes.LittleEndianStructure):
    """``struct tcpreset_key``: key of the tcpreset ``counters`` map."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("type", _u32)]


class TcpresetEvent(ctypes.LittleEndianStructure):
    """``struct tcpreset_event``: one reset; ``hdr.aux`` is the TCP state (0: no socket)."""

    _fields_ = [
        ("hdr", EventHeader),
        ("tuple", FlowTuple),
        ("reason", _u32),  # enum sk_rst_reason; TCPRESET_REASON_NONE when not given
    ]


# --- bpf/tcpretrans.h -----------------------------------------------------------------------


class TcpretransType(enum.IntEnum):
    """``enum tcpretrans_type``."""

    TCPRETRANS_SYN = 1
    TCPRETRANS_SYNACK = 2
    TCPRETRANS_LOSS = 3
    TCPRETRANS_FAST = 4


class TcpretransKey(ctypes.LittleEndianStructure):
    """``struct tcpretrans_key``: key of the tcpretrans ``counters`` map."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("type", _u32)]


class TcpretransEvent(ctypes.LittleEndianStructure):
    """``struct tcpretrans_event``: one retransmission; ``hdr.aux`` is the TCP state."""

    _fields_ = [("hdr", EventHeader), ("tuple", FlowTuple)]


# --- bpf/include/latency.h (netiftxlat, softirq, biolatency, virtcmdlatency) ----------------

#: log2 slots of nanoseconds: slot i counts [2^i, 2^(i+1)) ns, the last one is open-ended
LATENCY_SLOTS = 36


class LatencyHist(ctypes.LittleEndianStructure):
    """``struct latency_hist``: a log2 histogram of nanoseconds, with the upstream threshold
    counters ``slow[0]``, ``slow[1]`` (each probe says which thresholds)."""

    _fields_ = [("slots", _u64 * LATENCY_SLOTS), ("sum_ns", _u64), ("slow", _u64 * 2)]


class HistSlotState(enum.IntEnum):
    """``enum hist_slot_state``: the first 8 bytes of each slot of a latency probe's ``hists``."""

    HIST_FREE = 0
    HIST_CLAIMED = 1
    HIST_READY = 2
    HIST_DELETED = 3


def hist_slot(key: type[ctypes.Structure], value: type[ctypes.Structure]) -> type[ctypes.Structure]:
    """``struct hists_slot`` of a latency probe (``DECLARE_LATENCY_HISTS(key, value, ...)``)."""
    return type(f"{key.__name__}Slot", (ctypes.LittleEndianStructure,),
                {"_fields_": [("state", _u64), ("key", key), ("value", value)]})


class InflightStat(enum.IntEnum):
    """``enum inflight_stat``: index into a latency probe's per-CPU ``inflight_stats`` array."""

    INFLIGHT_STARTED = 0
    INFLIGHT_REPLACED = 1
    INFLIGHT_ENDED = 2
    INFLIGHT_DISCARDED = 3
    INFLIGHT_UNMATCHED = 4
    INFLIGHT_EVICTED = 5
    INFLIGHT__MAX = 6


# --- bpf/netiftxlat.h -----------------------------------------------------------------------


class NetiftxlatStage(enum.IntEnum):
    """``enum netiftxlat_stage``: histogram stage and event type."""

    NETIFTXLAT_QDISC = 1
    NETIFTXLAT_XMIT = 2


class NetiftxlatKey(ctypes.LittleEndianStructure):
    """``struct netiftxlat_key``: key of the netiftxlat ``hists`` map."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("ifindex", _u32), ("stage", _u32)]


class NetiftxlatValue(ctypes.LittleEndianStructure):
    """``struct netiftxlat_value``: value of the netiftxlat ``hists`` map."""

    _fields_ = [("hist", LatencyHist), ("ifname", ctypes.c_char * 16)]


class NetiftxlatEvent(ctypes.LittleEndianStructure):
    """``struct netiftxlat_event``: one packet slower than the threshold in one stage."""

    _fields_ = [
        ("hdr", EventHeader),
        ("latency_ns", _u64),
        ("qdisc_ns", _u64),
        ("xmit_ns", _u64),
        ("tuple", FlowTuple),
        ("ifindex", _u32),
        ("len", _u32),
        ("rc", ctypes.c_int32),
        ("cpu", _u32),
        ("ifname", ctypes.c_char * 16),
    ]


# --- bpf/softirq.h --------------------------------------------------------------------------


class SoftirqStage(enum.IntEnum):
    """``enum softirq_stage``."""

    SOFTIRQ_STAGE_SCHED = 1
    SOFTIRQ_STAGE_EXCUTE = 2


class SoftirqEventType(enum.IntEnum):
    """``enum softirq_event_type``: upstream's event types."""

    SOFTIRQ_SCHED_SLOW = 1
    SOFTIRQ_SCHED_100MS = 2
    SOFTIRQ_EXCUTE_SLOW = 3
    SOFTIRQ_EXCUTE_100MS = 4


class SoftirqKey(ctypes.LittleEndianStructure):
    """``struct softirq_key``: key of the softirq ``hists`` map (value: LatencyHist)."""

    _fields_ = [("vec", _u32), ("cpu", _u32), ("stage", _u32)]


class SoftirqEvent(ctypes.LittleEndianStructure):
    """``struct softirq_event``: one slow softirq."""

    _fields_ = [
        ("hdr", EventHeader),
        ("latency_ns", _u64),
        ("vec", _u32),
        ("cpu", _u32),
        ("stage", _u32),
        ("pid", _u32),
        ("comm", ctypes.c_char * 16),
    ]


# --- bpf/biolatency.h -----------------------------------------------------------------------


class BiolatencyOp(enum.IntEnum):
    """``enum biolatency_op``."""

    BIOLATENCY_OP_READ = 0
    BIOLATENCY_OP_WRITE = 1
    BIOLATENCY_OP_FLUSH = 2
    BIOLATENCY_OP_DISCARD = 3
    BIOLATENCY_OP_OTHER = 4


class BiolatencyEventType(enum.IntEnum):
    """``enum biolatency_event_type``."""

    BIOLAT_10MS = 1


class BiolatencyFlag(enum.IntEnum):
    """``enum biolatency_flag``: bits of ``BiolatencyEvent.flags``."""

    BIOLATENCY_KTHREAD = 1
    BIOLATENCY_FAILED = 2


class BiolatencyKey(ctypes.LittleEndianStructure):
    """``struct biolatency_key``: key of the biolatency ``hists`` map (value: LatencyHist)."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("dev", _u32), ("op", _u32)]


class BiolatencyEvent(ctypes.LittleEndianStructure):
    """``struct biolatency_event``: one slow block request."""

    _fields_ = [
        ("hdr", EventHeader),
        ("latency_ns", _u64),
        ("sector", _u64),
        ("dev", _u32),
        ("op", _u32),
        ("bytes", _u32),
        ("pid", _u32),
        ("flags", _u32),
        ("comm", ctypes.c_char * 16),
    ]


# --- bpf/virtcmdlatency.h -------------------------------------------------------------------


class VirtcmdlatencyEventType(enum.IntEnum):
    """``enum virtcmdlatency_event_type``: upstream's event types."""

    VIRTCMDEXCUTE = 1
    VIRTCMDEXCUTE_100MS = 2


class VirtcmdlatencyKey(ctypes.LittleEndianStructure):
    """``struct virtcmdlatency_key``: key of the virtcmdlatency ``hists`` map."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("ifindex", _u32), ("cls", _u32)]


class VirtcmdlatencyValue(ctypes.LittleEndianStructure):
    """``struct virtcmdlatency_value``: value of the virtcmdlatency ``hists`` map."""

    _fields_ = [("hist", LatencyHist), ("ifname", ctypes.c_char * 16)]


class VirtcmdlatencyEvent(ctypes.LittleEndianStructure):
    """``struct virtcmdlatency_event``: one slow virtio-net control command."""

    _fields_ = [
        ("hdr", EventHeader),
        ("latency_ns", _u64),
        ("pid", _u32),
        ("cpu", _u32),
        ("ifindex", _u32),
        ("cls", _u8),
        ("cmd", _u8),
        ("pad", _u16),
        ("ifname", ctypes.c_char * 16),
        ("comm", ctypes.c_char * 16),
    ]


# --- bpf/socketlatency.h --------------------------------------------------------------------


class SocketlatencyDirection(enum.IntEnum):
    """``enum socketlatency_direction``: histogram key and event type."""

    SOCKETLATENCY_READ = 1
    SOCKETLATENCY_WRITE = 2


class SocketlatencyKey(ctypes.LittleEndianStructure):
    """``struct socketlatency_key``: key of the socketlatency ``hists`` map (value LatencyHist)."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("direction", _u32)]


class SocketlatencyEvent(ctypes.LittleEndianStructure):
    """``struct socketlatency_event``: one slow read or write; ``hdr.aux`` is the TCP state."""

    _fields_ = [
        ("hdr", EventHeader),
        ("tuple", FlowTuple),  # source = the local end
        ("latency_ns", _u64),
        ("pid", _u32),
        ("pad", _u32),
        ("comm", ctypes.c_char * 16),
    ]


# --- bpf/kernellatency.h --------------------------------------------------------------------


class KernellatencyDirection(enum.IntEnum):
    """``enum kernellatency_direction``: histogram key and event type."""

    KERNELLATENCY_RX = 1
    KERNELLATENCY_TX = 2


class KernellatencyKey(ctypes.LittleEndianStructure):
    """``struct kernellatency_key``: key of the kernellatency ``hists`` map (value LatencyHist)."""

    _fields_ = [("netns", _u32), ("netns_cookie", _u32), ("direction", _u32)]


class KernellatencyEvent(ctypes.LittleEndianStructure):
    """``struct kernellatency_event``: one packet slow through the stack."""

    _fields_ = [
        ("hdr", EventHeader),
        ("tuple", FlowTuple),  # the packet's own: RX source = the sender
        ("latency_ns", _u64),
        ("ifindex", _u32),
        ("len", _u32),
        ("ifname", ctypes.c_char * 16),
    ]


# --- bpf/flow.h -----------------------------------------------------------------------------


class FlowDirection(enum.IntEnum):
    """``enum flow_direction``: the TC hook that saw the packet."""

    FLOW_INGRESS = 1
    FLOW_EGRESS = 2


class FlowStat(enum.IntEnum):
    """``enum flow_stat``: index into the per-CPU ``flow_stats`` array."""

    FLOW_STAT_INSERTED = 0
    FLOW_STAT_FAILED = 1
    FLOW_STAT_NOT_IP = 2
    FLOW_STAT__MAX = 3


class FlowKey(ctypes.LittleEndianStructure):
    """``struct flow_key``: key of the ``flows`` LRU hash."""

    _fields_ = [
        ("netns", _u32),
        ("netns_cookie", _u32),  # low 32 bits of the namespace's never-reused id
        ("direction", _u8),
        ("protocol", _u8),
        ("family", _u16),
        ("saddr", _u8 * 16),  # network byte order; IPv4 in the first 4 bytes
        ("daddr", _u8 * 16),
        ("sport", _u16),  # host byte order; 0 unless enablePortInLabel
        ("dport", _u16),
    ]


class FlowValue(ctypes.LittleEndianStructure):
    """``struct flow_value``: value of the ``flows`` LRU hash."""

    _fields_ = [("bytes", _u64), ("packets", _u64)]


#: C struct name -> mirror, for the BTF check.
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "event_header": EventHeader,
    "flow_tuple": FlowTuple,
    "selftest_key": SelftestKey,
    "selftest_event": SelftestEvent,
    "packetloss_key": PacketlossKey,
    "packetloss_event": PacketlossEvent,
    "tcpreset_key": TcpresetKey,
    "tcpreset_event": TcpresetEvent,
    "tcpretrans_key": TcpretransKey,
    "tcpretrans_event": TcpretransEvent,
    "latency_hist": LatencyHist,
    "netiftxlat_key": NetiftxlatKey,
    "netiftxlat_value": NetiftxlatValue,
    "netiftxlat_event": NetiftxlatEvent,
    "softirq_key": SoftirqKey,
    "softirq_event": SoftirqEvent,
    "biolatency_key": BiolatencyKey,
    "biolatency_event": BiolatencyEvent,
    "virtcmdlatency_key": VirtcmdlatencyKey,
    "virtcmdlatency_value": VirtcmdlatencyValue,
    "virtcmdlatency_event": VirtcmdlatencyEvent,
    "socketlatency_key": SocketlatencyKey,
    "socketlatency_event": SocketlatencyEvent,
    "kernellatency_key": KernellatencyKey,
    "kernellatency_event": KernellatencyEvent,
    "flow_key": FlowKey,
    "flow_value": FlowValue,
}

#: C enum name -> mirror, for the BTF check.
ENUMS: dict[str, type[enum.IntEnum]] = {
    "event_loss_reason": EventLossReason,
    "selftest_event_type": SelftestEventType,
    "packetloss_event_type": PacketlossEventType,
    "tcpreset_type": TcpresetType,
    "tcpretrans_type": TcpretransType,
    "inflight_stat": InflightStat,
    "hist_slot_state": HistSlotState,
    "netiftxlat_stage": NetiftxlatStage,
    "softirq_stage": SoftirqStage,
    "softirq_event_type": SoftirqEventType,
    "biolatency_op": BiolatencyOp,
    "biolatency_event_type": BiolatencyEventType,
    "biolatency_flag": BiolatencyFlag,
    "virtcmdlatency_event_type": VirtcmdlatencyEventType,
    "socketlatency_direction": SocketlatencyDirection,
    "kernellatency_direction": KernellatencyDirection,
    "flow_direction": FlowDirection,
    "flow_stat": FlowStat,
}


# --- decoding -------------------------------------------------------------------------------


def decode(cls: type[_T], raw: bytes) -> _T:
    """The record at the start of ``raw`` (a ring-buffer sample may carry trailing padding)."""
    size = ctypes.sizeof(cls)
    if len(raw) < size:
        raise DecodeError(f"{cls.__name__}: {len(raw)} bytes, need {size}")
    return cls.from_buffer_copy(raw, 0) if len(raw) == size else cls.from_buffer_copy(raw[:size])


def to_dict(value: Any) -> Any:
    """A mirror as plain data (dicts, ints, lists; ``char`` arrays as str) for tests and dumps."""
    if isinstance(value, ctypes.Structure):
        return {name: to_dict(getattr(value, name)) for name, *_ in value._fields_}
    if isinstance(value, bytes):  # c_char arrays read as bytes up to the first NUL
        return value.decode(errors="replace")
    if isinstance(value, ctypes.Array):
        return [to_dict(item) for item in value]
    return value


def ktime_to_unix_ns(ts_ns: int) -> int:
    """A ``bpf_ktime_get_ns()`` timestamp (CLOCK_MONOTONIC) as nanoseconds since the epoch."""
    return ts_ns + time.time_ns() - time.monotonic_ns()
