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

The table (``IPCTNL_MSG_CT_GET`` with ``NLM_F_DUMP``, every family): one ``IPCTNL_MSG_CT_NEW``
message per entry, each with its original and reply tuples, status bits and protocol state
(``ctnetlink_dump_table``, ``ctnetlink_fill_info``). :func:`read_table` yields the answer one
datagram at a time and :class:`TableSummary` counts the entries as they are decoded, so memory
stays one datagram plus one counter per key however large the table is; a reader that stops early
(the probe's entry cap) leaves the rest queued and discards the socket. What is counted:

- entries by original source address, protocol and TCP/SCTP state (:meth:`TableSummary.sources`);
- source NAT port use (:meth:`TableSummary.snat_ports`). A translated connection's reply tuple is
  ``destination -> translated source``: its reply source address and port are the real
  destination (after any DNAT) and its reply destination port is the translated source port.
  NAT keeps reply tuples unique (``nf_nat_used_tuple``), so the entries sharing (protocol,
  translated address, destination address, destination port) each hold one source port of that
  address: counting them is counting the ports in use. Entries of the namespace's own addresses
  that were not translated count too, since they take ports from the same space.

Attribute numbers and value formats come from pyroute2 (``nfct_stats_cpu``, ``nfct_stats``,
``nfct_msg`` and its nested classes). See ``include/uapi/linux/netfilter/nfnetlink_conntrack.h``
and https://docs.kernel.org/networking/nf_conntrack-sysctl.html.
"""

from __future__ import annotations

import operator
import socket
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
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
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_GET_STATS,
    IPCTNL_MSG_CT_GET_STATS_CPU,
    IPCTNL_MSG_CT_NEW,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT,
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
    find_attr,
    iter_messages,
    layout,
    scalar,
    schema,
    with_seq,
)
from otel_kubeskoop.netlink.sockets import dump, dump_datagrams

__all__ = [
    "EVENT_GROUPS",
    "ConntrackEvent",
    "ConntrackStats",
    "TableSummary",
    "event_type",
    "parse_event",
    "parse_stats",
    "parse_stats_cpu",
    "read_stats",
    "read_table",
    "stats_cpu_request",
    "stats_request",
    "table_request",
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

_NFGEN_SIZE = layout(nfgen_msg)[1]
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
_PROTO_STATES = (
    (_PROTOINFO["CTA_PROTOINFO_TCP"], schema(nfct_msg.cta_protoinfo.cta_protoinfo_tcp)["CTA_PROTOINFO_TCP_STATE"],
     TCP_CT_STATES),
    (_PROTOINFO["CTA_PROTOINFO_SCTP"], schema(nfct_msg.cta_protoinfo.cta_protoinfo_sctp)["CTA_PROTOINFO_SCTP_STATE"],
     SCTP_CT_STATES),
)
_CT_MSG = NFNL_SUBSYS_CTNETLINK << 8
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


def _request(msg_type: int, flags: int, seq: int) -> bytes:
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_UNSPEC
    msg["version"] = 0
    msg["res_id"] = 0
    return encode(msg, _CT_MSG | msg_type, flags, seq)


_STATS_CPU_REQUEST = _request(IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, 0)
_STATS_REQUEST = _request(IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, 0)


def stats_cpu_request(seq: int) -> bytes:
    """Dump of the per-CPU conntrack counters."""
    return with_seq(_STATS_CPU_REQUEST, seq)


def stats_request(seq: int) -> bytes:
    """Entries and limit (not a dump: one answer, then the ACK asked for here)."""
    return with_seq(_STATS_REQUEST, seq)


def _ct_messages(buf: bytes, msg_type: int) -> list[Message]:
    out = []
    for msg in iter_messages(buf):
        if msg.type != _CT_MSG | msg_type:
            continue
        if msg.end - msg.start < _NFGEN_SIZE:
            raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {_NFGEN_SIZE}")
        out.append(msg)
    return out


def parse_stats_cpu(buf: bytes) -> dict[str, int]:
    """Per-CPU counters summed over the CPUs of the dump, plus ``cpus``, the number of CPUs."""
    sums = dict.fromkeys(CPU_COUNTERS, 0)
    cpus = 0
    for msg in _ct_messages(buf, IPCTNL_MSG_CT_GET_STATS_CPU):
        found = attrs(buf, msg.start + _NFGEN_SIZE, msg.end)
        for name, atype in _CPU_TYPES.items():
            if atype in found:
                sums[name] += scalar(buf, found[atype], "be32")
        cpus += 1
    sums["cpus"] = cpus
    return sums


def parse_stats(buf: bytes) -> tuple[int | None, int | None]:
    """``(entries, max_entries)`` from the answer to :func:`stats_request`."""
    for msg in _ct_messages(buf, IPCTNL_MSG_CT_GET_STATS):
        found = attrs(buf, msg.start + _NFGEN_SIZE, msg.end)
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
    if mtype == _CT_MSG | IPCTNL_MSG_CT_DELETE:
        return "destroy"
    if mtype == _CT_MSG | IPCTNL_MSG_CT_NEW:
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
    if msg.end - msg.start < _NFGEN_SIZE:
        raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {_NFGEN_SIZE}")
    kind = event_type(msg.type, msg.flags)
    if kind is None:
        raise DecodeError(f"message type {msg.type:#x} is not a conntrack event")
    family = buf[msg.start]
    top = attrs(buf, msg.start + _NFGEN_SIZE, msg.end)
    orig = top.get(CTA_TUPLE_ORIG)
    if orig is None:
        raise DecodeError("conntrack event without CTA_TUPLE_ORIG")
    src, dst, protocol, sport, dport = _tuple(buf, orig)
    status = scalar(buf, top[CTA_STATUS], "be32") if CTA_STATUS in top else 0
    state = _state(buf, top)
    ct_id = scalar(buf, top[CTA_ID], "be32") if CTA_ID in top else None
    zone = scalar(buf, top[CTA_ZONE], "be16") if CTA_ZONE in top else None
    return ConntrackEvent(kind, family, protocol, _text(src), _text(dst), sport, dport, state, status,
                          bool(status & IPS_SEEN_REPLY), ct_id, zone)


def _tuple(buf: bytes, span: tuple[int, int]) -> tuple[bytes, bytes, int, int | None, int | None]:
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


def _state(buf: bytes, top: Mapping[int, tuple[int, int]]) -> str | None:
    """The TCP or SCTP state of an entry (``CTA_PROTOINFO``), lower case; None for other protocols."""
    if CTA_PROTOINFO not in top:
        return None
    info = attrs(buf, *top[CTA_PROTOINFO])
    for which, state_attr, names in _PROTO_STATES:
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


def _text(packed: bytes) -> str:
    if not packed:
        return ""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


# The table -----------------------------------------------------------------------------------

_TABLE_REQUEST = _request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 0)
_ENTRY = _CT_MSG | IPCTNL_MSG_CT_NEW  # the type of each dumped entry
SourceKey = tuple[str, int, "str | None"]  # (original source address, IP protocol, state)
SnatKey = tuple[int, str, str, int]  # (IP protocol, translated source, destination, destination port)


def table_request(seq: int) -> bytes:
    """Dump of every entry in the namespace's table, of every family (``AF_UNSPEC``)."""
    return with_seq(_TABLE_REQUEST, seq)


def read_table(sock: socket.socket, seq: int) -> Iterator[bytes]:
    """The answer to :func:`table_request` on ``sock``, one datagram at a time. A caller that
    stops early must discard the socket: the rest of the dump is still queued on it."""
    return dump_datagrams(sock, table_request(seq), seq, what="IPCTNL_MSG_CT_GET")


class TableSummary:
    """The entries of one table, counted as their datagrams are decoded (:meth:`add`).

    ``local``: the addresses of the table's own namespace. Their connections that were not
    source-NATed are counted in :meth:`snat_ports` as well (they hold ports of those addresses);
    other entries only when source-NATed. ``ports``: the source port range NAT picks from (first,
    last); only ports inside it are counted. Keys stay packed until asked for, so an address is
    turned into text once per key, not once per entry.
    """

    def __init__(self, local: Iterable[str] = (), ports: tuple[int, int] = (1024, 65535)) -> None:
        self.entries = 0
        self._first, self._last = ports
        self._local = frozenset(socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in local)
        self._sources: Counter[tuple[bytes, int, str | None]] = Counter()
        self._replies: Counter[tuple[int, bytes, bytes, int]] = Counter()
        self._snat: set[tuple[int, bytes, bytes, int]] = set()

    def add(self, buf: bytes) -> int:
        """Count the entries of ``buf`` (datagrams of a table dump; other messages are skipped);
        returns how many it held. Raises :class:`DecodeError` for a malformed one."""
        added = 0
        sources, replies, local, first, last = self._sources, self._replies, self._local, self._first, self._last
        for msg in iter_messages(buf):
            if msg.type != _ENTRY:
                continue
            if msg.end - msg.start < _NFGEN_SIZE:
                raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {_NFGEN_SIZE}")
            added += 1
            src, protocol, state, real_dst, translated, dport, port, nat = (
                _common_entry(buf, msg.start + _NFGEN_SIZE, msg.end) or _entry(buf, msg.start + _NFGEN_SIZE, msg.end))
            sources[(src, protocol, state)] += 1
            if port is not None and first <= port <= last and (nat or translated in local):
                key = (protocol, translated, real_dst, dport)
                replies[key] += 1
                if nat:
                    self._snat.add(key)
        self.entries += added
        return added

    def sources(self) -> dict[SourceKey, int]:
        """Entries by (original source address, IP protocol, TCP/SCTP state or None)."""
        out: Counter[SourceKey] = Counter()
        for (src, protocol, state), n in self._sources.items():
            out[(_text(src), protocol, state)] += n
        return dict(out)

    def snat_ports(self) -> dict[SnatKey, int]:
        """For each (IP protocol, translated source address, destination address, destination
        port) of a source-NATed entry: the entries holding a source port of that address towards
        that destination, i.e. the ports in use."""
        out: dict[SnatKey, int] = {}
        for key in self._snat:
            protocol, translated, dst, dport = key
            out[(protocol, _text(translated), _text(dst), dport)] = self._replies[key]
        return out


Entry = tuple[bytes, int, "str | None", bytes, bytes, "int | None", "int | None", bool]


def _entry(buf: bytes, start: int, end: int) -> Entry:
    """(original source, protocol, state, reply source = the real destination, reply destination
    = the translated source, reply source port = the destination port, reply destination port =
    the translated source port, source-NATed) of the entry whose attributes are
    ``buf[start:end]``."""
    top = attrs(buf, start, end)
    orig, reply = top.get(CTA_TUPLE_ORIG), top.get(CTA_TUPLE_REPLY)
    if orig is None or reply is None:
        raise DecodeError("conntrack entry without its original and reply tuples")
    src, _dst, protocol, _sport, _dport = _tuple(buf, orig)
    real_dst, translated, _protocol, dport, port = _tuple(buf, reply)
    nat = CTA_STATUS in top and bool(scalar(buf, top[CTA_STATUS], "be32") & IPS_SRC_NAT)
    return src, protocol, _state(buf, top), real_dst, translated, dport, port, nat


# The common entry, a connection with ports, starts the same way in every kernel
# (ctnetlink_fill_info): the original tuple, the reply tuple, then the status. Its attribute
# headers are compared with that layout in one step; an entry that differs in any header
# (ICMP, a zone, another kernel's layout) takes the general path, _entry. An entry costs
# about 3.6 us this way against 17 us walking every attribute (bench/conntrack_dump.py).
_NLA = struct.Struct("=HH")
_NESTED = 0x8000  # NLA_F_NESTED


@dataclass(frozen=True, slots=True)
class _Layout:
    struct: struct.Struct
    headers: operator.itemgetter  # the attribute headers among the unpacked values
    expected: tuple[bytes, ...]


def _layout(width: int, src_attr: int, dst_attr: int) -> tuple[bytes, _Layout]:
    ip_len = 4 + 2 * (4 + width)
    proto_len = 4 + 3 * 8  # protocol number, source port, destination port, each padded to 8
    tuple_len = 4 + ip_len + proto_len

    def tup(which: int) -> tuple[bytes, ...]:
        return (_NLA.pack(tuple_len, _NESTED | which) + _NLA.pack(ip_len, _NESTED | CTA_TUPLE_IP),
                _NLA.pack(4 + width, src_attr), _NLA.pack(4 + width, dst_attr),
                _NLA.pack(proto_len, _NESTED | CTA_TUPLE_PROTO) + _NLA.pack(5, CTA_PROTO_NUM),
                _NLA.pack(6, CTA_PROTO_SRC_PORT), _NLA.pack(6, CTA_PROTO_DST_PORT))

    one = f"8s4s{width}s4s{width}s8sB3x4s2s2x4s2s2x"
    layout = _Layout(struct.Struct(f"={one}{one}4s4s"),
                     operator.itemgetter(0, 1, 3, 5, 7, 9, 11, 12, 14, 16, 18, 20, 22),
                     tup(CTA_TUPLE_ORIG) + tup(CTA_TUPLE_REPLY) + (_NLA.pack(8, CTA_STATUS),))
    return layout.expected[0][:4], layout


_LAYOUTS = dict((_layout(4, CTA_IP_V4_SRC, CTA_IP_V4_DST), _layout(16, CTA_IP_V6_SRC, CTA_IP_V6_DST)))
_STATEFUL = (socket.IPPROTO_TCP, socket.IPPROTO_SCTP)
_TCP_STATE_HEADERS = (struct.pack("=H", _NESTED | _PROTO_STATES[0][0])
                      + _NLA.pack(5, _PROTO_STATES[0][1]))  # nested type of CTA_PROTOINFO_TCP, then its state's header


def _common_entry(buf: bytes, start: int, end: int) -> Entry | None:
    """:func:`_entry` of an entry laid out as :data:`_LAYOUTS` expects; None for any other."""
    layout = _LAYOUTS.get(buf[start:start + 4])
    if layout is None or end - start < layout.struct.size:
        return None
    v = layout.struct.unpack_from(buf, start)
    if layout.headers(v) != layout.expected:
        return None
    protocol = v[6]
    state = None
    if protocol in _STATEFUL:
        info = find_attr(buf, start + layout.struct.size, end, CTA_PROTOINFO)
        if info is not None:
            # CTA_PROTOINFO_TCP's first attribute is its state (ctnetlink's tcp_to_nlattr)
            at = info[0]
            if info[1] - at >= 9 and buf[at + 2:at + 8] == _TCP_STATE_HEADERS:
                state = TCP_CT_STATES.get(buf[at + 8], str(buf[at + 8]))
            else:
                state = _state(buf, {CTA_PROTOINFO: info})
    nat = bool(int.from_bytes(v[23], "big") & IPS_SRC_NAT)
    return v[2], protocol, state, v[13], v[15], int.from_bytes(v[19], "big"), int.from_bytes(v[21], "big"), nat
