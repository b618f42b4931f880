# SPDX-License-Identifier: Apache-2.0
"""TCP socket summary of one network namespace from sock_diag (``SOCK_DIAG_BY_FAMILY``).

One dump per address family (``AF_INET``, ``AF_INET6``) lists every TCP socket the namespace has
in its listening and established hash tables: the same sockets ``/proc/<pid>/net/tcp{,6}`` print,
with the same state, receive-queue and send-queue numbers (``tcp_diag_get_info`` and
``get_tcp4_sock`` read the same fields). For a listening socket sock_diag says more than /proc:
``idiag_rqueue`` is the accept-queue length (``sk_ack_backlog``) and ``idiag_wqueue`` its limit
(``sk_max_ack_backlog``, the ``listen()`` backlog capped by ``net.core.somaxconn``), which /proc
does not show. Request sockets (``TCP_NEW_SYN_RECV``) are reported in state ``SYN_RECV``, as
/proc shows them.

Only the fixed ``inet_diag_msg`` header is read (layout from pyroute2's ``inet_diag_msg``); the
request asks for no extensions. See https://man7.org/linux/man-pages/man7/sock_diag.7.html.
"""

from __future__ import annotations

import errno
import functools
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, inet_diag_msg, inet_diag_req

from otel_kubeskoop.netlink.core import (
    NLMSG_DONE,
    NLMSG_ERROR,
    DecodeError,
    NetlinkError,
    encode,
    field_reader,
    with_seq,
)
from otel_kubeskoop.netlink.sockets import receive

__all__ = [
    "TCP_STATES",
    "TcpSummary",
    "TcpSummaryBuilder",
    "inet_diag_request",
    "parse_tcp_summary",
    "read_tcp_summary",
]

# Kernel TCP states (include/net/tcp_states.h) -> semconv network.connection.state values.
TCP_ESTABLISHED, TCP_SYN_RECV, TCP_LISTEN, TCP_NEW_SYN_RECV = 1, 3, 10, 12
TCP_STATES: Mapping[int, str] = {
    1: "established",
    2: "syn_sent",
    3: "syn_received",
    4: "fin_wait_1",
    5: "fin_wait_2",
    6: "time_wait",
    7: "closed",
    8: "close_wait",
    9: "last_ack",
    10: "listen",
    11: "closing",
}
# Every state /proc/net/tcp can show (1..11) plus request sockets (12). TCP_BOUND_INACTIVE (13,
# Linux 6.8) is left out: those sockets are in neither hash table and /proc never lists them.
STATES_MASK = sum(1 << s for s in (*TCP_STATES, TCP_NEW_SYN_RECV))

_HDR = struct.Struct("=IHHII")
_MSG, _MSG_SIZE = field_reader(inet_diag_msg, "idiag_family", "idiag_state", "idiag_rqueue", "idiag_wqueue")
_NEED = _HDR.size + _MSG_SIZE
# Header and the wanted fields in one read (the hot loop: one call per socket).
_BOTH = struct.Struct(_HDR.format + _MSG.format.lstrip("="))


@dataclass(frozen=True, slots=True)
class TcpSummary:
    """TCP sockets of one namespace (IPv4 and IPv6 together)."""

    #: Sockets per state, every state of :data:`TCP_STATES` present (zero included).
    states: Mapping[str, int]
    #: Bytes received and not yet read by the application, summed over non-listening sockets.
    rx_queue: int
    #: Bytes sent and not yet acknowledged by the peer, summed over non-listening sockets.
    tx_queue: int
    #: Connections waiting in listening sockets' accept queues (completed, not yet accept()ed).
    listen_queue: int
    #: The fullest accept queue: max over listening sockets of length / limit (0 with none).
    #: Above 1 that queue is full (the kernel admits one connection beyond the limit, then
    #: ``sk_acceptq_is_full``) and new connections are dropped (``ListenOverflows``).
    listen_utilization: float

    @property
    def sockets(self) -> int:
        return sum(self.states.values())


def inet_diag_request(family: int, seq: int) -> bytes:
    """A ``SOCK_DIAG_BY_FAMILY`` dump request for every TCP socket of ``family``."""
    return with_seq(_inet_diag_request(family), seq)


@functools.cache
def _inet_diag_request(family: int) -> bytes:
    req = inet_diag_req()
    req["sdiag_family"] = family
    req["sdiag_protocol"] = socket.IPPROTO_TCP
    req["idiag_ext"] = 0
    req["idiag_states"] = STATES_MASK
    return encode(req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 0)


class TcpSummaryBuilder:
    """Sums sock_diag answers as they arrive, one datagram at a time (pure: bytes in, counts kept).

    The probe feeds each ``recv`` result straight in, so a dump of 10,000 sockets is walked once.
    """

    def __init__(self) -> None:
        self._counts = [0] * 16
        self._rx = self._tx = self._listen_queue = 0
        self._utilization = 0.0

    def feed(self, buf: bytes, seq: int | None = None) -> bool:
        """Add the messages of ``buf``; return True once it ends the dump (``NLMSG_DONE``/ACK).

        Messages carrying another sequence number than ``seq`` (when given) are an earlier
        request's and are skipped. Raises :class:`DecodeError` for truncated or malformed messages
        and :class:`NetlinkError` for a kernel error. Other message types are ignored.
        """
        counts = self._counts
        rx, tx, listen_queue, utilization = self._rx, self._tx, self._listen_queue, self._utilization
        unpack_hdr = _HDR.unpack_from
        unpack_both = _BOTH.unpack_from
        need = _BOTH.size
        done = False
        n = len(buf)
        off = 0
        try:
            while off < n:
                if n - off >= need:  # room for a whole inet_diag_msg: one read
                    length, mtype, _flags, mseq, _pid, _family, state, rqueue, wqueue = unpack_both(buf, off)
                elif n - off >= 16:
                    length, mtype, _flags, mseq, _pid = unpack_hdr(buf, off)
                else:
                    raise DecodeError(f"{n - off} bytes at offset {off}: shorter than a netlink header")
                if length < 16 or length > n - off:
                    raise DecodeError(f"message at offset {off} claims {length} bytes, {n - off} left")
                if seq is not None and mseq != seq:
                    pass
                elif mtype == SOCK_DIAG_BY_FAMILY:
                    if length < _NEED:
                        raise DecodeError(f"inet_diag_msg at offset {off} has {length - 16} bytes, "
                                          f"needs {_MSG_SIZE}")
                    if state == TCP_LISTEN:
                        listen_queue += rqueue
                        ratio = rqueue / (wqueue or 1)
                        if ratio > utilization:
                            utilization = ratio
                    else:
                        rx += rqueue
                        tx += wqueue
                        if state == TCP_NEW_SYN_RECV:
                            state = TCP_SYN_RECV
                    if state < 16:
                        counts[state] += 1
                elif mtype == NLMSG_ERROR or mtype == NLMSG_DONE:
                    if length >= 20:
                        (code,) = struct.unpack_from("=i", buf, off + 16)
                        if code < 0:
                            raise NetlinkError(-code, "sock_diag dump")
                    done = True
                off += (length + 3) & ~3
        finally:
            self._rx, self._tx, self._listen_queue, self._utilization = rx, tx, listen_queue, utilization
        return done

    def summary(self) -> TcpSummary:
        return TcpSummary(
            states={name: self._counts[number] for number, name in TCP_STATES.items()},
            rx_queue=self._rx,
            tx_queue=self._tx,
            listen_queue=self._listen_queue,
            listen_utilization=self._utilization,
        )


def parse_tcp_summary(*dumps: bytes) -> TcpSummary:
    """Summarize the answers to :func:`inet_diag_request` (one ``bytes`` per family).

    Raises :class:`DecodeError` for truncated or malformed messages and :class:`NetlinkError` if a
    dump carries a kernel error. Messages of other types are ignored.
    """
    builder = TcpSummaryBuilder()
    for buf in dumps:
        builder.feed(buf)
    return builder.summary()


# An IPv6 dump on a kernel without IPv6 (or with it disabled) fails with one of these: no data
# for that family, not a failure of the namespace (upstream skips the whole namespace instead).
_NO_FAMILY = (errno.ENOENT, errno.EAFNOSUPPORT, errno.EOPNOTSUPP, errno.EINVAL)


def read_tcp_summary(sock: socket.socket, seq: int) -> TcpSummary:
    """Dump IPv4 then IPv6 TCP sockets on ``sock`` (a ``NETLINK_SOCK_DIAG`` socket) and summarize.

    Uses sequence numbers ``seq`` and ``seq + 1``. Each datagram is summed as it arrives.
    """
    builder = TcpSummaryBuilder()
    for family, fseq in ((socket.AF_INET, seq), (socket.AF_INET6, seq + 1)):
        sock.send(inet_diag_request(family, fseq))
        try:
            for chunk in receive(sock, what="sock_diag"):
                if builder.feed(chunk, fseq):
                    break
        except NetlinkError as exc:
            if family != socket.AF_INET6 or exc.errno not in _NO_FAMILY:
                raise
    return builder.summary()
