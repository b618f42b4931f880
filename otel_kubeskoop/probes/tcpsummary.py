# SPDX-License-Identifier: Apache-2.0
"""tcpsummary: TCP sockets per state, queued bytes and accept-queue backlog, per namespace.

Upstream parses every line of ``/proc/<pid>/net/tcp`` and ``tcp6``; here one sock_diag dump per
address family reads the same sockets with the same state and queue numbers (checked against a
parse of /proc in ``tests/privileged/probes/test_tcpsummary.py``) at a fraction of the cost
(``bench/tcpsummary.py``), and adds what /proc does not show: each listening socket's accept-queue
limit. From it come two per-namespace series upstream never exported: the connections waiting to be
``accept()``ed (``tcplistenbacklog``) and the fullest accept queue relative to its limit
(``tcplistenbacklog.utilization``; above 1 the queue is full and new connections are dropped,
the moment ``tcpext.listenoverflows`` starts counting). Both stay per namespace on purpose: per listening port
would multiply series by the ports a pod listens on.

A namespace without IPv6 reports its IPv4 sockets (upstream skips the whole namespace).
"""

from __future__ import annotations

import errno
import socket

from otel_kubeskoop.netlink.core import NETLINK_SOCK_DIAG, DecodeError, NetlinkError
from otel_kubeskoop.netlink.sock_diag import TCP_STATES, TcpSummary, read_tcp_summary
from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._netlink import NetnsNetlinkProbe
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import G, U, InstrumentSpec

# Netlink probes (otel_kubeskoop/netlink/).
# tcpsummary: sock_diag per namespace, IPv4 and IPv6 together. The five upstream state series
# keep upstream's names; kubeskoop.tcpsummary.tcpconn has every state as an attribute.
TCPSUMMARY_STATES = tuple(
    InstrumentSpec(f"kubeskoop.tcpsummary.{word}", U, "{connection}", desc, key=state,
                   compat=f"kubeskoop_tcpsummary_{word}")
    for word, state, desc in [
        ("tcpestablishedconn", "established", "TCP sockets in ESTABLISHED"),
        ("tcptimewaitconn", "time_wait", "TCP sockets in TIME_WAIT"),
        ("tcpclosewaitconn", "close_wait", "TCP sockets in CLOSE_WAIT (the peer closed, the application has not)"),
        ("tcpsynsentconn", "syn_sent", "TCP sockets in SYN_SENT (connect() waiting for the SYN-ACK)"),
        ("tcpsynrecvconn", "syn_received", "TCP connections in SYN_RECV (request sockets waiting for the final ACK)"),
    ]
)
TCPSUMMARY_CONN = InstrumentSpec(
    "kubeskoop.tcpsummary.tcpconn", U, "{connection}",
    "TCP sockets by state (every state, listening sockets included)", (A.NETWORK_CONNECTION_STATE,))
TCPSUMMARY_QUEUES = (
    InstrumentSpec("kubeskoop.tcpsummary.tcptxqueue", U, "By",
                   "Bytes sent and not yet acknowledged, summed over non-listening TCP sockets",
                   key="tx_queue", compat="kubeskoop_tcpsummary_tcptxqueue"),
    InstrumentSpec("kubeskoop.tcpsummary.tcprxqueue", U, "By",
                   "Bytes received and not yet read by the application, summed over non-listening TCP sockets",
                   key="rx_queue", compat="kubeskoop_tcpsummary_tcprxqueue"),
)
TCPSUMMARY_LISTEN = (
    InstrumentSpec("kubeskoop.tcpsummary.tcplistenbacklog", U, "{connection}",
                   "Connections completed and waiting in listening sockets' accept queues (not yet accept()ed)",
                   key="listen_queue"),
    InstrumentSpec("kubeskoop.tcpsummary.tcplistenbacklog.utilization", G, "1",
                   "The fullest accept queue of the namespace: queue length / backlog limit, max over "
                   "listening sockets; above 1 the queue is full and that listener drops new connections",
                   key="listen_utilization"),
)
INSTRUMENTS = TCPSUMMARY_STATES + (TCPSUMMARY_CONN,) + TCPSUMMARY_QUEUES + TCPSUMMARY_LISTEN


def samples(summary: TcpSummary, netns: int) -> list[Sample]:
    out = [Sample(spec, summary.states[spec.key], netns) for spec in TCPSUMMARY_STATES]
    out += [Sample(TCPSUMMARY_CONN, summary.states[state], netns, ((A.NETWORK_CONNECTION_STATE, state),))
            for state in TCP_STATES.values()]
    out += [Sample(spec, getattr(summary, spec.key), netns) for spec in TCPSUMMARY_QUEUES + TCPSUMMARY_LISTEN]
    return out


class TcpSummaryProbe(NetnsNetlinkProbe):
    PROTOCOL = NETLINK_SOCK_DIAG

    def check(self, sock: socket.socket) -> None:
        read_tcp_summary(sock, self._next_seq())

    def unavailable(self, exc: OSError | DecodeError) -> str:
        if isinstance(exc, NetlinkError) and exc.errno == errno.ENOENT:
            return "sock_diag has no TCP handler: the kernel lacks CONFIG_INET_TCP_DIAG"
        return f"sock_diag (NETLINK_SOCK_DIAG) for TCP failed: {exc}"

    def read(self, inode: int, sock: socket.socket) -> list[Sample]:
        return samples(read_tcp_summary(sock, self._next_seq()), inode)


SPEC = ProbeSpec(
    name="tcpsummary",
    summary="TCP sockets per state, queued bytes and accept-queue backlog of each network namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.NETLINK,
    scope=Scope.NETNS,
    overhead=Overhead.MEDIUM,
    overhead_note="two sock_diag dumps per namespace per collection, each a walk of the kernel's TCP "
                  "hash table (about 0.5 ms per namespace with 262,144 buckets; reading /proc/net/tcp{,6} "
                  "costs about 3 ms) plus about 1 us per TCP socket; one netlink socket per namespace",
    default_enabled=False,
    factory=TcpSummaryProbe,
    instruments=INSTRUMENTS,
    requires=("sock_diag for TCP (CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG)",
              "CAP_SYS_ADMIN to enter pod namespaces (setns)"),
)
