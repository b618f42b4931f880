# SPDX-License-Identifier: Apache-2.0
"""Connection tracking statistics and events of one network namespace, from ctnetlink.

Statistics (``NETLINK_NETFILTER``, subsystem ``NFNL_SUBSYS_CTNETLINK``):

- ``IPCTNL_MSG_CT_GET_STATS_CPU`` is a dump with one message per possible CPU, the counters of
  ``net->ct.stat`` (``found``, ``invalid``, ``insert_failed``, ``drop``...); they are summed here.
  ``net->ct.stat`` belongs to the namespace: every namespace has its own counters.
- ``IPCTNL_MSG_CT_GET_STATS`` answers one message: ``CTA_STATS_GLOBAL_ENTRIES`` is
  ``nf_conntrack_count(net)``, the namespace's own entry count; ``CTA_STATS_GLOBAL_MAX_ENTRIES`` is
  the global ``nf_conntrack_max``, one value for the whole node (in a child namespace
  ``/proc/sys/net/netfilter/nf_conntrack_max`` is read-only and shows the initial namespace's
  value; checked on Linux 6.18).

Events: a socket bound to the multicast groups ``NFNLGRP_CONNTRACK_NEW``/``UPDATE``/``DESTROY``
receives one message per conntrack event of its namespace: ``IPCTNL_MSG_CT_NEW`` with
``NLM_F_CREATE|NLM_F_EXCL`` for a new entry, without them for an update, ``IPCTNL_MSG_CT_DELETE``
when the entry is destroyed (``ctnetlink_conntrack_event``). :func:`event_type` classifies a message
from its header alone, so a rate limiter can drop it before decoding; :func:`parse_event` decodes
the tuple, state and status.

The table dump and its decode are in :mod:`otel_kubeskoop.netlink.conntrack.table`.

Attribute numbers and value formats come from pyroute2 (``nfct_stats_cpu``, ``nfct_stats``,
``nfct_msg`` and its nested classes). See ``include/uapi/linux/netfilter/nfnetlink_conntrack.h``
and https://docs.kernel.org/networking/nf_conntrack-sysctl.html.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import (
    NFNL_SUBSYS_CTNETLINK,
    NFNLGRP_CONNTRACK_DESTROY,
    NFNLGRP_CONNTRACK_NEW,
    NFNLGRP_CONNTRACK_UPDATE,
    nfgen_msg,
)
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_GET_STATS,
    IPCTNL_MSG_CT_GET_STATS_CPU,
    IPCTNL_MSG_CT_NEW,
    IPS_SEEN_REPLY,
    TCP_CONNTRACK_TO_NAME,
    nfct_msg,
    nfct_stats,
    nfct_stats_cpu,
)

from otel_kubeskoop.netlink.core import (
    DecodeError,
    Message,
    attrs,
    encode,
    iter_messages,
    layout,
    scalar,
    schema,
    with_seq,
)
from otel_kubeskoop.netlink.sockets import dump

__all__ = [
    "EVENT_GROUPS",
    "ConntrackEvent",
    "ConntrackStats",
    "address_text",
    "decode_state",
    "decode_tuple",
    "event_type",
    "parse_event",
    "parse_stats",
    "parse_stats_cpu",
    "read_stats",
    "request",
    "stats_cpu_request",
    "stats_request",
]

#: Counters of ``IPCTNL_MSG_CT_GET_STATS_CPU`` (``CTA_STATS_*``, ``struct ip_conntrack_stat``)
#: reported here, by their ``/proc/net/stat/nf_conntrack`` column names. ``searched``, ``new``,
#: ``delete`` and ``delete_list`` are left out: the kernel has sent them as 0 since Linux 4.10.
CPU_COUNTERS: Mapping[str, str] = {
    "found": "CTA_STATS_FOUND",
    "invalid": "CTA_STATS_INVALID",
    "ignore": "CTA_STATS_IGNORE",
    "insert": "CTA_STATS_INSERT",
    "insert_failed": "CTA_STATS_INSERT_FAILED",
    "drop": "CTA_STATS_DROP",
    "early_drop": "CTA_STATS_EARLY_DROP",
    "error": "CTA_STATS_ERROR",
    "search_restart": "CTA_STATS_SEARCH_RESTART",
    "clash_resolve": "CTA_STATS_CLASH_RESOLVE",
    "chain_toolong": "CTA_STATS_CHAIN_TOOLONG",
}

#: Event type -> the multicast group that carries it.
EVENT_GROUPS: Mapping[str, int] = {
    "new": NFNLGRP_CONNTRACK_NEW,
    "update": NFNLGRP_CONNTRACK_UPDATE,
    "destroy": NFNLGRP_CONNTRACK_DESTROY,
}

# TCP conntrack states (nf_conntrack_tcp.h); pyroute2 names 9 by its obsolete alias LISTEN.
TCP_CT_STATES: Mapping[int, str] = {
    0: "none", **{k: v.lower() for k, v in TCP_CONNTRACK_TO_NAME.items()}, 9: "syn_sent2",
}
SCTP_CT_STATES: Mapping[int, str] = dict(enumerate((
    "none", "closed", "cookie_wait", "cookie_echoed", "established", "shutdown_sent",
    "shutdown_recd", "shutdown_ack_sent", "heartbeat_sent",
)))

NFGEN_SIZE = layout(nfgen_msg)[1]
_CPU = schema(nfct_stats_cpu)
_GLOBAL = schema(nfct_stats)
_CPU_TYPES = {name: _CPU[attr] for name, attr in CPU_COUNTERS.items()}
# Attribute numbers of an event (pyroute2's nfct_msg and its nested classes), looked up once.
_CTA = schema(nfct_msg)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_ID, CTA_ZONE = (
    _CTA[n] for n in ("CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY", "CTA_STATUS", "CTA_PROTOINFO", "CTA_ID", "CTA_ZONE"))
_TUPLE = schema(nfct_msg.cta_tuple)
CTA_TUPLE_IP, CTA_TUPLE_PROTO = _TUPLE["CTA_TUPLE_IP"], _TUPLE["CTA_TUPLE_PROTO"]
_IP = schema(nfct_msg.cta_tuple.cta_ip)
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = (
    _IP[n] for n in ("CTA_IP_V4_SRC", "CTA_IP_V4_DST", "CTA_IP_V6_SRC", "CTA_IP_V6_DST"))
_PROTO = schema(nfct_msg.cta_tuple.cta_proto)
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = (
    _PROTO[n] for n in ("CTA_PROTO_NUM", "CTA_PROTO_SRC_PORT", "CTA_PROTO_DST_PORT"))
_PROTOINFO = schema(nfct_msg.cta_protoinfo)
# (CTA_PROTOINFO_<proto>, its _STATE attribute, state names)
PROTO_STATES = (
    (_PROTOINFO["CTA_PROTOINFO_TCP"], schema(nfct_msg.cta_protoinfo.cta_protoinfo_tcp)["CTA_PROTOINFO_TCP_STATE"],
     TCP_CT_STATES),
    (_PROTOINFO["CTA_PROTOINFO_SCTP"], schema(nfct_msg.cta_protoinfo.cta_protoinfo_sctp)["CTA_PROTOINFO_SCTP_STATE"],
     SCTP_CT_STATES),
)
CT_MSG = NFNL_SUBSYS_CTNETLINK << 8
_NEW_FLAGS = NLM_F_CREATE | NLM_F_EXCL


@dataclass(frozen=True, slots=True)
class ConntrackStats:
    """Conntrack counters of one namespace: per-CPU counters summed, plus entries and the limit."""

    found: int = 0
    invalid: int = 0
    ignore: int = 0
    insert: int = 0
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    error: int = 0
    search_restart: int = 0
    clash_resolve: int = 0
    chain_toolong: int = 0
    cpus: int = 0  # per-CPU messages summed
    entries: int | None = None  # nf_conntrack_count of the namespace
    max_entries: int | None = None  # nf_conntrack_max (node-wide)


@dataclass(frozen=True, slots=True)
class ConntrackEvent:
    """One ctnetlink event, decoded from its original-direction tuple."""

    type: str  # new, update, destroy
    family: int  # socket.AF_INET or AF_INET6
    protocol: int  # IP protocol number
    src: str
    dst: str
    sport: int | None  # TCP, UDP, SCTP, DCCP, UDP-Lite ports; None otherwise
    dport: int | None
    state: str | None  # TCP or SCTP conntrack state, lower case; None for other protocols
    status: int  # IPS_* bits
    replied: bool  # IPS_SEEN_REPLY: traffic was seen in both directions
    id: int | None  # CTA_ID: the same for every event of one entry
    zone: int | None = None


def request(msg_type: int, flags: int, seq: int) -> bytes:
    """A ctnetlink request of ``msg_type`` for every family (encoded by pyroute2)."""
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_UNSPEC
    msg["version"] = 0
    msg["res_id"] = 0
    return encode(msg, CT_MSG | msg_type, flags, seq)


_STATS_CPU_REQUEST = request(IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, 0)
_STATS_REQUEST = request(IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, 0)


def stats_cpu_request(seq: int) -> bytes:
    """Dump of the per-CPU conntrack counters."""
    return with_seq(_STATS_CPU_REQUEST, seq)


def stats_request(seq: int) -> bytes:
    """Entries and limit (not a dump: one answer, then the ACK asked for here)."""
    return with_seq(_STATS_REQUEST, seq)


def _ct_messages(buf: bytes, msg_type: int) -> list[Message]:
    out = []
    for msg in iter_messages(buf):
        if msg.type != CT_MSG | msg_type:
            continue
        if msg.end - msg.start < NFGEN_SIZE:
            raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {NFGEN_SIZE}")
        out.append(msg)
    return out


def parse_stats_cpu(buf: bytes) -> dict[str, int]:
    """Per-CPU counters summed over the CPUs of the dump, plus ``cpus``, the number of CPUs."""
    sums = dict.fromkeys(CPU_COUNTERS, 0)
    cpus = 0
    for msg in _ct_messages(buf, IPCTNL_MSG_CT_GET_STATS_CPU):
        found = attrs(buf, msg.start + NFGEN_SIZE, msg.end)
        for name, atype in _CPU_TYPES.items():
            if atype in found:
                sums[name] += scalar(buf, found[atype], "be32")
        cpus += 1
    sums["cpus"] = cpus
    return sums


def parse_stats(buf: bytes) -> tuple[int | None, int | None]:
    """``(entries, max_entries)`` from the answer to :func:`stats_request`."""
    for msg in _ct_messages(buf, IPCTNL_MSG_CT_GET_STATS):
        found = attrs(buf, msg.start + NFGEN_SIZE, msg.end)
        entries = found.get(_GLOBAL["CTA_STATS_GLOBAL_ENTRIES"])
        limit = found.get(_GLOBAL["CTA_STATS_GLOBAL_MAX_ENTRIES"])
        return (scalar(buf, entries, "be32") if entries else None,
                scalar(buf, limit, "be32") if limit else None)
    return None, None


def read_stats(sock: socket.socket, seq: int) -> ConntrackStats:
    """Counters of the namespace of ``sock`` (a ``NETLINK_NETFILTER`` socket); uses ``seq``, ``seq+1``."""
    cpu = parse_stats_cpu(dump(sock, stats_cpu_request(seq), seq, what="IPCTNL_MSG_CT_GET_STATS_CPU"))
    entries, limit = parse_stats(dump(sock, stats_request(seq + 1), seq + 1, what="IPCTNL_MSG_CT_GET_STATS"))
    return ConntrackStats(**cpu, entries=entries, max_entries=limit)


def event_type(mtype: int, flags: int) -> str | None:
    """``new``/``update``/``destroy`` from a message header; ``None`` for anything else."""
    if mtype == CT_MSG | IPCTNL_MSG_CT_DELETE:
        return "destroy"
    if mtype == CT_MSG | IPCTNL_MSG_CT_NEW:
        return "new" if flags & _NEW_FLAGS == _NEW_FLAGS else "update"
    return None


def parse_event(buf: bytes, msg: Message | None = None) -> ConntrackEvent:
    """Decode one event message (``buf`` holding exactly one, or ``msg`` locating it in ``buf``).

    Raises :class:`DecodeError` if the message is not a conntrack event, is truncated, or lacks
    the original tuple.
    """
    if msg is None:
        msgs = list(iter_messages(buf))
        if len(msgs) != 1:
            raise DecodeError(f"expected one message, found {len(msgs)}")
        msg = msgs[0]
    if msg.end - msg.start < NFGEN_SIZE:
        raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {NFGEN_SIZE}")
    kind = event_type(msg.type, msg.flags)
    if kind is None:
        raise DecodeError(f"message type {msg.type:#x} is not a conntrack event")
    family = buf[msg.start]
    top = attrs(buf, msg.start + NFGEN_SIZE, msg.end)
    orig = top.get(CTA_TUPLE_ORIG)
    if orig is None:
        raise DecodeError("conntrack event without CTA_TUPLE_ORIG")
    src, dst, protocol, sport, dport = decode_tuple(buf, orig)
    status = scalar(buf, top[CTA_STATUS], "be32") if CTA_STATUS in top else 0
    state = decode_state(buf, top)
    ct_id = scalar(buf, top[CTA_ID], "be32") if CTA_ID in top else None
    zone = scalar(buf, top[CTA_ZONE], "be16") if CTA_ZONE in top else None
    return ConntrackEvent(kind, family, protocol, address_text(src), address_text(dst), sport, dport, state, status,
                          bool(status & IPS_SEEN_REPLY), ct_id, zone)


def decode_tuple(buf: bytes, span: tuple[int, int]) -> tuple[bytes, bytes, int, int | None, int | None]:
    """(source, destination, protocol, source port, destination port) of a ``CTA_TUPLE_*``
    attribute; addresses packed (4 or 16 bytes; empty when absent), ports None for protocols
    without ports."""
    tup = attrs(buf, *span)
    src = dst = b""
    if CTA_TUPLE_IP in tup:
        ip = attrs(buf, *tup[CTA_TUPLE_IP])
        if CTA_IP_V4_SRC in ip and CTA_IP_V4_DST in ip:
            src, dst = _packed(buf, ip[CTA_IP_V4_SRC], 4), _packed(buf, ip[CTA_IP_V4_DST], 4)
        elif CTA_IP_V6_SRC in ip and CTA_IP_V6_DST in ip:
            src, dst = _packed(buf, ip[CTA_IP_V6_SRC], 16), _packed(buf, ip[CTA_IP_V6_DST], 16)
    protocol = 0
    sport = dport = None
    if CTA_TUPLE_PROTO in tup:
        proto = attrs(buf, *tup[CTA_TUPLE_PROTO])
        if CTA_PROTO_NUM in proto:
            protocol = scalar(buf, proto[CTA_PROTO_NUM], "uint8")
        if CTA_PROTO_SRC_PORT in proto and CTA_PROTO_DST_PORT in proto:
            sport = scalar(buf, proto[CTA_PROTO_SRC_PORT], "be16")
            dport = scalar(buf, proto[CTA_PROTO_DST_PORT], "be16")
    return src, dst, protocol, sport, dport


def decode_state(buf: bytes, top: Mapping[int, tuple[int, int]]) -> str | None:
    """The TCP or SCTP state of an entry (``CTA_PROTOINFO``), lower case; None for other protocols."""
    if CTA_PROTOINFO not in top:
        return None
    info = attrs(buf, *top[CTA_PROTOINFO])
    for which, state_attr, names in PROTO_STATES:
        if which in info:
            inner = attrs(buf, *info[which])
            if state_attr in inner:
                number = scalar(buf, inner[state_attr], "uint8")
                return names.get(number, str(number))
            return None
    return None


def _packed(buf: bytes, span: tuple[int, int], width: int) -> bytes:
    start, end = span
    if end - start < width:
        raise DecodeError(f"address attribute of {end - start} bytes, needs {width}")
    return bytes(buf[start : start + width])


def address_text(packed: bytes) -> str:
    """A packed IPv4 or IPv6 address as ``inet_ntop`` writes it; "" for none."""
    if not packed:
        return ""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)

