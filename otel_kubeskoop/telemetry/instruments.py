# SPDX-License-Identifier: Apache-2.0
"""The one table of every metric the agent emits: OTLP name, instrument kind, unit, description,
attribute keys, the key its source calls it, and the upstream KubeSkoop compat name.

OTLP names are ``kubeskoop.<probe>.<metric>`` with the upstream metric words, so the Prometheus
form of an OTLP name is the upstream name plus the usual unit and ``_total`` suffixes. Kernel
counters are monotonic sums (upstream exports them as gauges); levels are up-down counters or
gauges. Docs and the compat endpoint are generated from this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from otel_kubeskoop.telemetry import attributes as A


class InstrumentKind(enum.Enum):
    COUNTER = "counter"  # monotonic cumulative sum (observable counter)
    UPDOWN = "updowncounter"  # non-monotonic sum: a count of things that exist now
    GAUGE = "gauge"  # a setting or a last measurement
    HISTOGRAM = "histogram"  # a distribution the kernel keeps in buckets (cumulative counts)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    key: str = ""  # what the source calls the value (e.g. the /proc/net/snmp column)
    compat: str | None = None  # upstream Prometheus name, None when upstream has none
    # Attribute values left out of the compat series (upstream netdev skips lo).
    compat_exclude: tuple[tuple[str, str], ...] = ()

    @property
    def probe(self) -> str:
        return self.name.split(".")[1]


C, U, G = InstrumentKind.COUNTER, InstrumentKind.UPDOWN, InstrumentKind.GAUGE


def _mib(probe: str, rows: list[tuple[str, InstrumentKind, str, str]]) -> tuple[InstrumentSpec, ...]:
    """Instruments of a probe whose metric word is its source key lower-cased (upstream's rule)."""
    return tuple(
        InstrumentSpec(
            name=f"kubeskoop.{probe}.{key.lower()}",
            kind=kind,
            unit=unit,
            description=desc,
            key=key,
            compat=f"kubeskoop_{probe}_{key.lower()}",
        )
        for key, kind, unit, desc in rows
    )


# /proc/<pid>/net/snmp, "Tcp:" section (RFC 4022 TCP-MIB).
TCP = _mib("tcp", [
    ("ActiveOpens", C, "{connection}", "TCP connections opened by connect() (SYN_SENT transitions)"),
    ("PassiveOpens", C, "{connection}", "TCP connections accepted from LISTEN (SYN_RECV transitions)"),
    ("RetransSegs", C, "{segment}", "TCP segments retransmitted"),
    ("AttemptFails", C, "{connection}", "TCP connection attempts that failed (SYN_SENT/SYN_RECV to CLOSED or LISTEN)"),
    ("EstabResets", C, "{connection}", "TCP connections reset from ESTABLISHED or CLOSE_WAIT"),
    ("CurrEstab", U, "{connection}", "TCP connections currently in ESTABLISHED or CLOSE_WAIT"),
    ("InSegs", C, "{segment}", "TCP segments received, including errors"),
    ("OutSegs", C, "{segment}", "TCP segments sent, excluding retransmissions"),
    ("InErrs", C, "{segment}", "TCP segments received in error (bad checksum and the like)"),
    ("OutRsts", C, "{segment}", "TCP segments sent with the RST flag"),
])

# /proc/<pid>/net/snmp, "Udp:" section (RFC 4113 UDP-MIB plus Linux additions).
UDP = _mib("udp", [
    ("InDatagrams", C, "{datagram}", "UDP datagrams delivered to sockets"),
    ("NoPorts", C, "{datagram}", "UDP datagrams received for a port with no listener"),
    ("InErrors", C, "{datagram}", "UDP datagrams that could not be delivered, other than NoPorts"),
    ("OutDatagrams", C, "{datagram}", "UDP datagrams sent"),
    ("RcvbufErrors", C, "{datagram}", "UDP datagrams dropped because the socket receive buffer was full"),
    ("SndbufErrors", C, "{datagram}", "UDP datagrams not sent because the socket send buffer was full"),
    ("InCsumErrors", C, "{datagram}", "UDP datagrams received with a bad checksum"),
    ("IgnoredMulti", C, "{datagram}", "UDP multicast/broadcast datagrams ignored for lack of a listener"),
])

# /proc/<pid>/net/snmp, "Ip:" section (RFC 4293 IP-MIB).
IP = _mib("ip", [
    ("Forwarding", G, "1", "IP forwarding setting: 1 forwarding, 2 not forwarding"),
    ("DefaultTTL", G, "1", "Default TTL of IP packets sent"),
    ("InReceives", C, "{packet}", "IP packets received from interfaces, including errors"),
    ("InHdrErrors", C, "{packet}", "IP packets discarded for header errors"),
    ("InAddrErrors", C, "{packet}", "IP packets discarded for an invalid destination address"),
    ("ForwDatagrams", C, "{packet}", "IP packets forwarded"),
    ("InUnknownProtos", C, "{packet}", "IP packets discarded for an unknown transport protocol"),
    ("InDiscards", C, "{packet}", "IP packets received without error but discarded (e.g. no buffer)"),
    ("InDelivers", C, "{packet}", "IP packets delivered to transport protocols"),
    ("OutRequests", C, "{packet}", "IP packets handed to IP for sending by local protocols"),
    ("OutDiscards", C, "{packet}", "IP packets to send that were discarded without error"),
    ("OutNoRoutes", C, "{packet}", "IP packets discarded because no route was found"),
    ("ReasmTimeout", G, "s", "Seconds fragments are held while awaiting reassembly"),
    ("ReasmReqds", C, "{fragment}", "IP fragments received that needed reassembly"),
    ("ReasmOKs", C, "{packet}", "IP packets successfully reassembled"),
    ("ReasmFails", C, "{packet}", "IP reassembly failures"),
    ("FragOKs", C, "{packet}", "IP packets successfully fragmented"),
    ("FragFails", C, "{packet}", "IP packets discarded because they needed fragmenting but could not be"),
    ("FragCreates", C, "{fragment}", "IP fragments created"),
])

# /proc/<pid>/net/netstat, "TcpExt:" section: the 32 keys upstream exports.
TCPEXT = _mib("tcpext", [
    ("ListenDrops", C, "{packet}", "SYNs and ACKs dropped at a listening socket (includes ListenOverflows)"),
    ("ListenOverflows", C, "{packet}", "Connections dropped because the accept queue was full"),
    ("TCPSynRetrans", C, "{segment}", "SYN and SYN-ACK retransmissions"),
    ("TCPFastRetrans", C, "{segment}", "Fast retransmissions"),
    ("TCPRetransFail", C, "{segment}", "Retransmissions that failed to be sent"),
    ("TCPTimeouts", C, "{timeout}", "Retransmission timer expiries (RTO)"),
    ("TCPAbortOnClose", C, "{connection}", "Connections reset on close() with unread data"),
    ("TCPAbortOnMemory", C, "{connection}", "Connections aborted for lack of memory"),
    ("TCPAbortOnTimeout", C, "{connection}", "Connections aborted after too many retransmission timeouts"),
    ("TCPAbortOnLinger", C, "{connection}", "Connections aborted in FIN_WAIT2 after the linger time"),
    ("TCPAbortOnData", C, "{connection}", "Connections reset on unexpected data after close"),
    ("TCPAbortFailed", C, "{connection}", "Resets that could not be sent"),
    ("TCPACKSkippedSynRecv", C, "{segment}", "Rate-limited duplicate ACKs not sent in SYN_RECV"),
    ("TCPACKSkippedPAWS", C, "{segment}", "Rate-limited ACKs not sent for PAWS failures"),
    ("TCPACKSkippedSeq", C, "{segment}", "Rate-limited ACKs not sent for out-of-window sequence numbers"),
    ("TCPACKSkippedFinWait2", C, "{segment}", "Rate-limited ACKs not sent in FIN_WAIT2"),
    ("TCPACKSkippedTimeWait", C, "{segment}", "Rate-limited ACKs not sent in TIME_WAIT"),
    ("TCPACKSkippedChallenge", C, "{segment}", "Rate-limited challenge ACKs not sent"),
    ("TCPRcvQDrop", C, "{packet}", "Packets dropped because the receive queue or socket memory was full"),
    ("TCPMemoryPressures", C, "{event}", "Times TCP entered memory pressure"),
    ("TCPMemoryPressuresChrono", C, "ms", "Milliseconds spent under TCP memory pressure"),
    ("PAWSActive", C, "{packet}", "Active-open packets rejected by PAWS"),
    ("PAWSEstab", C, "{packet}", "Packets on established connections rejected by PAWS"),
    ("EmbryonicRsts", C, "{segment}", "Resets received on connections in SYN_RECV"),
    ("TCPWinProbe", C, "{segment}", "Zero-window probes sent"),
    ("TCPKeepAlive", C, "{segment}", "Keepalive probes sent"),
    ("TCPMTUPFail", C, "{event}", "Path MTU probes that failed"),
    ("TCPMTUPSuccess", C, "{event}", "Path MTU probes that succeeded"),
    ("TCPZeroWindowDrop", C, "{packet}", "Segments dropped because the receive window was zero"),
    ("TCPBacklogDrop", C, "{packet}", "Packets dropped because the socket backlog was full"),
    ("PFMemallocDrop", C, "{packet}", "pfmemalloc packets dropped by a socket not allowed to use reserves"),
    ("TCPWqueueTooBig", C, "{event}", "Sends refused because the write queue was too big"),
])

# /proc/<pid>/net/dev, per interface. The key is the NetDevStats field.
_IF = (A.NETWORK_INTERFACE_NAME,)
_NO_LO = ((A.NETWORK_INTERFACE_NAME, "lo"),)
NETDEV = tuple(
    InstrumentSpec(
        name=f"kubeskoop.netdev.{word}", kind=C, unit=unit, description=desc, attributes=_IF,
        key=key, compat=f"kubeskoop_netdev_{word}", compat_exclude=_NO_LO,
    )
    for word, key, unit, desc in [
        ("rxbytes", "rx_bytes", "By", "Bytes received by the interface"),
        ("rxpackets", "rx_packets", "{packet}", "Packets received by the interface"),
        ("rxerrors", "rx_errs", "{error}", "Receive errors on the interface"),
        ("rxdropped", "rx_drop", "{packet}", "Received packets dropped by the interface"),
        ("txbytes", "tx_bytes", "By", "Bytes transmitted by the interface"),
        ("txpackets", "tx_packets", "{packet}", "Packets transmitted by the interface"),
        ("txerrors", "tx_errs", "{error}", "Transmit errors on the interface"),
        ("txdropped", "tx_drop", "{packet}", "Transmit packets dropped by the interface"),
    ]
)
_IO = (A.NETWORK_INTERFACE_NAME, A.NETWORK_IO_DIRECTION)
# Semconv names (k8s metrics, development): pod namespaces use k8s.pod.*, the host k8s.node.*.
K8S_POD_NETWORK_IO = InstrumentSpec("k8s.pod.network.io", C, "By", "Network bytes for the Pod", _IO)
K8S_POD_NETWORK_ERRORS = InstrumentSpec("k8s.pod.network.errors", C, "{error}", "Pod network errors", _IO)
K8S_NODE_NETWORK_IO = InstrumentSpec("k8s.node.network.io", C, "By", "Network bytes for the Node", _IO)
K8S_NODE_NETWORK_ERRORS = InstrumentSpec("k8s.node.network.errors", C, "{error}", "Node network errors", _IO)
NETDEV_STANDARD = (K8S_POD_NETWORK_IO, K8S_POD_NETWORK_ERRORS, K8S_NODE_NETWORK_IO, K8S_NODE_NETWORK_ERRORS)

# /proc/<pid>/net/sockstat + sockstat6 (TCP lines). inuse counts IPv4 and IPv6, as upstream.
SOCK = tuple(
    InstrumentSpec(f"kubeskoop.sock.{word}", U, unit, desc, key=word, compat=f"kubeskoop_sock_{word}")
    for word, unit, desc in [
        ("inuse", "{socket}", "TCP sockets in use, IPv4 and IPv6"),
        ("orphan", "{socket}", "Orphaned TCP sockets (closed by the application, not yet by TCP)"),
        ("tw", "{socket}", "TCP sockets in TIME_WAIT"),
        ("alloc", "{socket}", "TCP sockets allocated"),
        ("mem", "{page}", "Memory pages used by TCP sockets"),
    ]
)

# /proc/net/softnet_stat: node scope, one series per CPU (the file is not per namespace).
_CPU = (A.CPU_LOGICAL_NUMBER,)
SOFTNET = (
    InstrumentSpec("kubeskoop.softnet.processed", C, "{packet}",
                   "Packets processed by the CPU's network backlog", _CPU, key="processed",
                   compat="kubeskoop_softnet_processed"),
    InstrumentSpec("kubeskoop.softnet.dropped", C, "{packet}",
                   "Packets dropped because the CPU's backlog (net.core.netdev_max_backlog) was full",
                   _CPU, key="dropped", compat="kubeskoop_softnet_dropped"),
    InstrumentSpec("kubeskoop.softnet.timesqueeze", C, "{event}",
                   "NET_RX softirq runs that ended with work left (budget or time exhausted)",
                   _CPU, key="time_squeeze"),
)

# /proc/net/ip_vs_stats totals (host netns).
IPVS = tuple(
    InstrumentSpec(f"kubeskoop.ipvs.{word}", C, unit, desc, key=key, compat=f"kubeskoop_ipvs_{word}")
    for word, key, unit, desc in [
        ("connections", "connections", "{connection}", "IPVS connections scheduled"),
        ("incomingpackets", "incoming_packets", "{packet}", "Packets into IPVS virtual services"),
        ("incomingbytes", "incoming_bytes", "By", "Bytes into IPVS virtual services"),
        ("outgoingpackets", "outgoing_packets", "{packet}", "Packets out of IPVS virtual services"),
        ("outgoingbytes", "outgoing_bytes", "By", "Bytes out of IPVS virtual services"),
    ]
)

# The agent's own health, on the node resource.
_P = (A.PROBE,)
AGENT_PROBE_DURATION = InstrumentSpec(
    "kubeskoop.agent.probe.duration", G, "s", "Wall time of the probe's last collection", _P)
AGENT_PROBE_ERRORS = InstrumentSpec(
    "kubeskoop.agent.probe.errors", C, "{error}",
    "Probe collections or parses that failed, by error type", (A.PROBE, A.ERROR_TYPE))
AGENT_PROBE_STATE = InstrumentSpec(
    "kubeskoop.agent.probe.state", G, "1",
    "1 for the probe's current state (running, unavailable, failed, stopped)", (A.PROBE, A.PROBE_STATE))
AGENT_NETNS_COUNT = InstrumentSpec(
    "kubeskoop.agent.netns.count", U, "{namespace}", "Network namespaces the agent watches")
AGENT_CYCLE_DURATION = InstrumentSpec(
    "kubeskoop.agent.cycle.duration", G, "s", "Wall time of the last whole collection cycle")
AGENT_EXPORT_FAILURES = InstrumentSpec(
    "kubeskoop.agent.export.failures", C, "{request}", "OTLP export calls that failed", (A.SIGNAL,))
# Events: delivered + lost (by reason) = what the kernel saw. Kernel-side reasons (rate_limited,
# ring_buffer_full) come from the probe's own counters; decode_error and export_queue_full from
# the agent.
AGENT_EVENTS_DELIVERED = InstrumentSpec(
    "kubeskoop.agent.events.delivered", C, "{event}", "Events handed to the event sinks", (A.PROBE,))
AGENT_EVENTS_LOST = InstrumentSpec(
    "kubeskoop.agent.events.lost", C, "{event}",
    "Events not delivered, by reason: rate_limited, ring_buffer_full, decode_error, export_queue_full",
    (A.PROBE, A.LOSS_REASON))
AGENT = (AGENT_EVENTS_DELIVERED, AGENT_EVENTS_LOST, AGENT_PROBE_DURATION, AGENT_PROBE_ERRORS, AGENT_PROBE_STATE, AGENT_NETNS_COUNT,
         AGENT_CYCLE_DURATION, AGENT_EXPORT_FAILURES)

ALL: tuple[InstrumentSpec, ...] = (
    TCP + UDP + IP + TCPEXT + NETDEV + NETDEV_STANDARD + SOCK + SOFTNET + IPVS + AGENT
)
BY_NAME = {spec.name: spec for spec in ALL}
