# SPDX-License-Identifier: Apache-2.0
"""A namespace's conntrack table, from ctnetlink.

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

See ``include/uapi/linux/netfilter/nfnetlink_conntrack.h`` and
https://docs.kernel.org/networking/nf_conntrack-sysctl.html.
"""

from __future__ import annotations

import operator
import socket
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, IPS_SRC_NAT

from otel_kubeskoop.netlink.conntrack import (
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_PROTOINFO,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_STATUS,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    CT_MSG,
    NFGEN_SIZE,
    PROTO_STATES,
    TCP_CT_STATES,
    address_text,
    decode_state,
    decode_tuple,
    request,
)
from otel_kubeskoop.netlink.core import DecodeError, attrs, find_attr, iter_messages, scalar, with_seq
from otel_kubeskoop.netlink.sockets import dump_datagrams

__all__ = ["SnatKey", "SourceKey", "TableSummary", "read_table", "table_request"]


# The table -----------------------------------------------------------------------------------

_TABLE_REQUEST = request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 0)
_ENTRY = CT_MSG | IPCTNL_MSG_CT_NEW  # the type of each dumped entry
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
            if msg.end - msg.start < NFGEN_SIZE:
                raise DecodeError(f"nfgenmsg of {msg.end - msg.start} bytes, needs {NFGEN_SIZE}")
            added += 1
            src, protocol, state, real_dst, translated, dport, port, nat = (
                _common_entry(buf, msg.start + NFGEN_SIZE, msg.end) or _entry(buf, msg.start + NFGEN_SIZE, msg.end))
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
            out[(address_text(src), protocol, state)] += n
        return dict(out)

    def snat_ports(self) -> dict[SnatKey, int]:
        """For each (IP protocol, translated source address, destination address, destination
        port) of a source-NATed entry: the entries holding a source port of that address towards
        that destination, i.e. the ports in use."""
        out: dict[SnatKey, int] = {}
        for key in self._snat:
            protocol, translated, dst, dport = key
            out[(protocol, address_text(translated), address_text(dst), dport)] = self._replies[key]
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
    src, _dst, protocol, _sport, _dport = decode_tuple(buf, orig)
    real_dst, translated, _protocol, dport, port = decode_tuple(buf, reply)
    nat = CTA_STATUS in top and bool(scalar(buf, top[CTA_STATUS], "be32") & IPS_SRC_NAT)
    return src, protocol, decode_state(buf, top), real_dst, translated, dport, port, nat


# The common entry, a connection with ports, starts the same way in every kernel
# (ctnetlink_fill_info): the original tuple, the reply tuple, then the status. Its attribute
# headers are compared with that layout in one step; an entry that differs in any header
# (ICMP, a zone, another kernel's layout) takes the general path, _entry. An entry costs
# about 3 us this way against 13 to 17 us walking every attribute (bench/conntrack_dump.py).
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
_TCP_STATE_HEADERS = (struct.pack("=H", _NESTED | PROTO_STATES[0][0])
                      + _NLA.pack(5, PROTO_STATES[0][1]))  # nested type of CTA_PROTOINFO_TCP, then its state's header


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
                state = decode_state(buf, {CTA_PROTOINFO: info})
    nat = bool(int.from_bytes(v[23], "big") & IPS_SRC_NAT)
    return v[2], protocol, state, v[13], v[15], int.from_bytes(v[19], "big"), int.from_bytes(v[21], "big"), nat
