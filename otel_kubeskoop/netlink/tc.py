# SPDX-License-Identifier: Apache-2.0
"""Queueing disciplines and TC filters of one network namespace and its interface names, from
rtnetlink.

An ``RTM_GETQDISC`` dump lists every visible qdisc of every interface of the namespace the socket
belongs to, each with its kind (``TCA_KIND``), handle, parent and statistics: ``TCA_STATS2``
(nested ``TCA_STATS_BASIC`` bytes/packets, ``TCA_STATS_PKT64`` when packets pass 2^32, and
``TCA_STATS_QUEUE`` qlen/backlog/drops/requeues/overlimits), or the legacy ``TCA_STATS`` struct,
which the kernel sends alongside for old tools and which has no requeues. Interface indexes are
resolved with an ``RTM_GETLINK`` dump on the **same** socket, so names are the namespace's own
(upstream resolves them in the agent's namespace, which names a pod's ``eth0`` after whatever
host interface has the same index).

An ``RTM_GETTFILTER`` dump of one hook (an interface and a parent, such as a clsact qdisc's
ingress) lists its filters: handle, priority and protocol (``tcm_info``), kind and, for
``cls_bpf``, the program's id and the filter's name (``TCA_OPTIONS``: ``TCA_BPF_ID``,
``TCA_BPF_NAME``, ``include/uapi/linux/pkt_cls.h``). :func:`bpf_filter_request` adds a
direct-action ``cls_bpf`` filter of any protocol (libbpf's ``bpf_tc_attach`` only makes
``ETH_P_ALL`` ones).

Layouts and attribute numbers come from pyroute2 (``tcmsg``, ``tcmsg.stats``, the tc ``stats2``
NLA, ``ifinfmsg``). See https://man7.org/linux/man-pages/man7/rtnetlink.7.html and
``include/uapi/linux/gen_stats.h``.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETQDISC, RTM_NEWLINK, RTM_NEWQDISC, TC_H_ROOT
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import stats2

from otel_kubeskoop.netlink.core import (
    DecodeError,
    attrs,
    encode,
    find_attr,
    iter_messages,
    layout,
    scalar,
    schema,
    string,
    with_seq,
)
from otel_kubeskoop.netlink.sockets import dump

__all__ = [
    "Qdisc",
    "TcFilter",
    "bpf_filter_request",
    "filter_dump_request",
    "parse_filters",
    "link_dump_request",
    "parse_link_names",
    "parse_qdiscs",
    "qdisc_dump_request",
    "read_link_names",
    "read_qdiscs",
    "tc_handle",
]

TC_H_UNSPEC = 0
#: ``TCA_STATS_PKT64`` (``gen_stats.h``, Linux 5.5): 64-bit packet count, sent only when the
#: 32-bit ``gnet_stats_basic.packets`` has wrapped. Not in pyroute2's ``stats2`` map.
TCA_STATS_PKT64 = 8
#: ``RTEXT_FILTER_SKIP_STATS`` (``rtnetlink.h``): leave interface statistics out of link dumps.
RTEXT_FILTER_SKIP_STATS = 1 << 3

_TCA = schema(tcmsg)
_TCA_KIND, _TCA_STATS, _TCA_STATS2 = _TCA["TCA_KIND"], _TCA["TCA_STATS"], _TCA["TCA_STATS2"]
_ST2 = schema(stats2)
_ST2_BASIC, _ST2_QUEUE = _ST2["TCA_STATS_BASIC"], _ST2["TCA_STATS_QUEUE"]
_TCMSG, _TCMSG_SIZE = layout(tcmsg)
_BASIC, _BASIC_SIZE = layout(stats2.basic)
_QUEUE, _QUEUE_SIZE = layout(stats2.queue)
_LEGACY, _LEGACY_SIZE = layout(tcmsg.stats)
_IFLA_IFNAME = schema(ifinfmsg)["IFLA_IFNAME"]
_IFINFO, _IFINFO_SIZE = layout(ifinfmsg)
_TCA_OPTIONS = _TCA["TCA_OPTIONS"]

# rtnetlink.h, netlink.h, pkt_cls.h (pyroute2 0.9 has no TCA_BPF_ID)
RTM_NEWTFILTER = 44
RTM_GETTFILTER = 46
_NLM_F_ACK = 0x4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_NLA_F_NESTED = 0x8000
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1
_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG_FILTER = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_NLA_HDR = struct.Struct("=HH")


@dataclass(frozen=True, slots=True)
class Qdisc:
    """One qdisc and its counters, as the kernel dumps them."""

    ifindex: int
    kind: str
    handle: int
    parent: int
    bytes: int
    packets: int
    drops: int
    requeues: int  # 0 when only legacy TCA_STATS was sent (it has no requeues)
    overlimits: int
    qlen: int  # packets queued now
    backlog: int  # bytes queued now

    @property
    def handle_text(self) -> str:
        """As ``tc qdisc show`` prints it: ``8001:``, ``0:`` (a qdisc handle has no minor)."""
        return f"{self.handle >> 16:x}:"

    @property
    def parent_text(self) -> str:
        """As ``tc qdisc show`` prints it: ``root``, ``1:10``, ``:1``, ``ffff:fff1`` (ingress)."""
        return tc_handle(self.parent)


@dataclass(frozen=True, slots=True)
class TcFilter:
    """One filter of a hook, as the kernel dumps it."""

    ifindex: int
    parent: int
    handle: int
    priority: int
    protocol: int  # an ETH_P_* value in host order (0x0003: ETH_P_ALL)
    kind: str  # "bpf" for cls_bpf
    prog_id: int | None  # cls_bpf: the id of the filter's program
    name: str  # cls_bpf: the filter's name (libbpf writes "<program>:[<id>]")


def tc_handle(h: int) -> str:
    """A class id as tc prints it (``sprint_tc_classid``): ``root``, ``none``, ``1:10``, ``:1``, ``8001:``."""
    if h == TC_H_ROOT:
        return "root"
    if h == TC_H_UNSPEC:
        return "none"
    major, minor = h >> 16, h & 0xFFFF
    if major == 0:
        return f":{minor:x}"
    if minor == 0:
        return f"{major:x}:"
    return f"{major:x}:{minor:x}"


def qdisc_dump_request(seq: int) -> bytes:
    """``RTM_GETQDISC`` dump of every interface."""
    return with_seq(_QDISC_REQUEST, seq)


def link_dump_request(seq: int) -> bytes:
    """``RTM_GETLINK`` dump of every interface, statistics left out."""
    return with_seq(_LINK_REQUEST, seq)


def _link_request() -> bytes:
    msg = ifinfmsg()
    msg["attrs"] = [["IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS]]
    return encode(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 0)


def filter_dump_request(ifindex: int, parent: int, seq: int) -> bytes:
    """``RTM_GETTFILTER`` dump of every filter of the hook ``parent`` of interface ``ifindex``."""
    payload = _TCMSG_FILTER.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), RTM_GETTFILTER,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + payload


def _nla(atype: int, payload: bytes) -> bytes:
    raw = _NLA_HDR.pack(_NLA_HDR.size + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def bpf_filter_request(ifindex: int, parent: int, handle: int, priority: int, protocol: int,
                       prog_fd: int, name: str, seq: int) -> bytes:
    """``RTM_NEWTFILTER`` (create, never replace; acknowledged) of a direct-action ``cls_bpf``
    filter running ``prog_fd``, for frames of ``protocol`` (an ETH_P_* value, host order)."""
    options = (_nla(TCA_BPF_FD, struct.pack("=I", prog_fd))
               + _nla(TCA_BPF_NAME, name.encode() + b"\0")
               + _nla(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
    info = priority << 16 | socket.htons(protocol)
    payload = (_TCMSG_FILTER.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)
               + _nla(_TCA_KIND, b"bpf\0") + _nla(_TCA_OPTIONS | _NLA_F_NESTED, options))
    flags = NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), RTM_NEWTFILTER, flags, seq, 0) + payload


_QDISC_REQUEST = encode(tcmsg(), RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, 0)
_LINK_REQUEST = _link_request()


def _u(buf: bytes, start: int, field: tuple[int, str]) -> int:
    return int(struct.unpack_from(field[1], buf, start + field[0])[0])


def parse_qdiscs(buf: bytes) -> list[Qdisc]:
    """The ``RTM_NEWQDISC`` messages of a dump, in order. Other message types are skipped.

    A qdisc with neither ``TCA_STATS2`` nor ``TCA_STATS`` is left out (nothing to report).
    Raises :class:`DecodeError` for truncated or malformed messages.
    """
    out: list[Qdisc] = []
    for msg in iter_messages(buf):
        if msg.type != RTM_NEWQDISC:
            continue
        if msg.end - msg.start < _TCMSG_SIZE:
            raise DecodeError(f"tcmsg of {msg.end - msg.start} bytes, needs {_TCMSG_SIZE}")
        ifindex = _u(buf, msg.start, _TCMSG["index"])
        handle = _u(buf, msg.start, _TCMSG["handle"])
        parent = _u(buf, msg.start, _TCMSG["parent"])
        top = attrs(buf, msg.start + _TCMSG_SIZE, msg.end)
        kind = string(buf, top[_TCA_KIND]) if _TCA_KIND in top else ""
        counters = _stats2(buf, top[_TCA_STATS2]) if _TCA_STATS2 in top else None
        if counters is None and _TCA_STATS in top:
            counters = _legacy(buf, top[_TCA_STATS])
        if counters is None:
            continue
        out.append(Qdisc(ifindex, kind, handle, parent, **counters))
    return out


def _stats2(buf: bytes, span: tuple[int, int]) -> dict[str, int] | None:
    nested = attrs(buf, *span)
    if _ST2_BASIC not in nested and _ST2_QUEUE not in nested:
        return None
    out = dict(bytes=0, packets=0, drops=0, requeues=0, overlimits=0, qlen=0, backlog=0)
    if _ST2_BASIC in nested:
        start, end = nested[_ST2_BASIC]
        if end - start < _BASIC_SIZE:
            raise DecodeError(f"TCA_STATS_BASIC of {end - start} bytes, needs {_BASIC_SIZE}")
        out["bytes"] = _u(buf, start, _BASIC["bytes"])
        out["packets"] = _u(buf, start, _BASIC["packets"])
    if TCA_STATS_PKT64 in nested:
        start, end = nested[TCA_STATS_PKT64]
        if end - start < 8:
            raise DecodeError(f"TCA_STATS_PKT64 of {end - start} bytes")
        out["packets"] = _u(buf, start, (0, "=Q"))
    if _ST2_QUEUE in nested:
        start, end = nested[_ST2_QUEUE]
        if end - start < _QUEUE_SIZE:
            raise DecodeError(f"TCA_STATS_QUEUE of {end - start} bytes, needs {_QUEUE_SIZE}")
        for name in ("qlen", "backlog", "drops", "requeues", "overlimits"):
            out[name] = _u(buf, start, _QUEUE[name])
    return out


def _legacy(buf: bytes, span: tuple[int, int]) -> dict[str, int]:
    start, end = span
    if end - start < _LEGACY_SIZE:
        raise DecodeError(f"TCA_STATS of {end - start} bytes, needs {_LEGACY_SIZE}")
    return dict(
        bytes=_u(buf, start, _LEGACY["bytes"]),
        packets=_u(buf, start, _LEGACY["packets"]),
        drops=_u(buf, start, _LEGACY["drop"]),
        requeues=0,
        overlimits=_u(buf, start, _LEGACY["overlimits"]),
        qlen=_u(buf, start, _LEGACY["qlen"]),
        backlog=_u(buf, start, _LEGACY["backlog"]),
    )


def parse_filters(buf: bytes) -> list[TcFilter]:
    """The filters in the ``RTM_NEWTFILTER`` messages of a dump, in order; the head of each
    (priority, protocol) chain (handle 0, no filter of its own) is left out.

    Raises :class:`DecodeError` for truncated or malformed messages.
    """
    out: list[TcFilter] = []
    for msg in iter_messages(buf):
        if msg.type != RTM_NEWTFILTER:
            continue
        if msg.end - msg.start < _TCMSG_FILTER.size:
            raise DecodeError(f"tcmsg of {msg.end - msg.start} bytes, needs {_TCMSG_FILTER.size}")
        _family, ifindex, handle, parent, info = _TCMSG_FILTER.unpack_from(buf, msg.start)
        if not handle:
            continue
        top = attrs(buf, msg.start + _TCMSG_FILTER.size, msg.end)
        kind = string(buf, top[_TCA_KIND]) if _TCA_KIND in top else ""
        prog_id, name = None, ""
        if kind == "bpf" and _TCA_OPTIONS in top:
            options = attrs(buf, *top[_TCA_OPTIONS])
            if TCA_BPF_ID in options:
                prog_id = scalar(buf, options[TCA_BPF_ID], "uint32")
            if TCA_BPF_NAME in options:
                name = string(buf, options[TCA_BPF_NAME])
        out.append(TcFilter(ifindex, parent, handle, info >> 16, socket.ntohs(info & 0xFFFF),
                            kind, prog_id, name))
    return out


def parse_link_names(buf: bytes) -> dict[int, str]:
    """``{ifindex: name}`` from the ``RTM_NEWLINK`` messages of a dump."""
    out: dict[int, str] = {}
    for msg in iter_messages(buf):
        if msg.type != RTM_NEWLINK:
            continue
        if msg.end - msg.start < _IFINFO_SIZE:
            raise DecodeError(f"ifinfomsg of {msg.end - msg.start} bytes, needs {_IFINFO_SIZE}")
        span = find_attr(buf, msg.start + _IFINFO_SIZE, msg.end, _IFLA_IFNAME)
        if span is not None:
            out[_u(buf, msg.start, _IFINFO["index"])] = string(buf, span)
    return out


def read_qdiscs(sock: socket.socket, seq: int) -> list[Qdisc]:
    """Dump the qdiscs of the namespace of ``sock`` (a ``NETLINK_ROUTE`` socket)."""
    return parse_qdiscs(dump(sock, qdisc_dump_request(seq), seq, what="RTM_GETQDISC"))


def read_link_names(sock: socket.socket, seq: int) -> dict[int, str]:
    """``{ifindex: name}`` of the namespace of ``sock`` (a ``NETLINK_ROUTE`` socket)."""
    return parse_link_names(dump(sock, link_dump_request(seq), seq, what="RTM_GETLINK"))
