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
    # Attributes kept as compat labels, (attribute key, upstream label name); the compat series
    # sums over every other attribute (rdma keeps device, type and port).
    compat_labels: tuple[tuple[str, str], ...] = ()

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

# Pod scope (Sample.pod_uid): summed over the processes (TGIDs) of the pod's cgroup, hostNetwork pods
# included. Upstream counted distinct link targets (two descriptors on /dev/null counted once);
# these count descriptors, which is what RLIMIT_NOFILE limits.
FD = (
    InstrumentSpec("kubeskoop.fd.openfd", U, "{file_descriptor}",
                   "File descriptors open in the pod's processes", key="open", compat="kubeskoop_fd_openfd"),
    InstrumentSpec("kubeskoop.fd.opensocket", U, "{file_descriptor}",
                   "File descriptors of the pod's processes that are sockets", key="sockets",
                   compat="kubeskoop_fd_opensocket"),
)
# /proc/<tgid>/io summed over the pod's processes; kept monotonic when processes exit (probes/io.py).
IO = tuple(
    InstrumentSpec(f"kubeskoop.io.{word}", C, unit, desc, key=key, compat=f"kubeskoop_io_{word}")
    for word, key, unit, desc in [
        ("readsyscall", "syscr", "{syscall}", "Read-class system calls made by the pod's processes"),
        ("writesyscall", "syscw", "{syscall}", "Write-class system calls made by the pod's processes"),
        ("readbytes", "read_bytes", "By", "Bytes the pod's processes caused to be read from storage"),
        ("writebytes", "write_bytes", "By", "Bytes the pod's processes caused to be written to storage"),
    ]
)

# RDMA, node scope. Resource counts from RDMA netlink (RDMA_NLDEV_CMD_RES_GET summary) per device;
# port counters from /sys/class/infiniband/<dev>/ports/<n>/{counters,hw_counters}/<name>, keeping
# the driver's casing (kubeskoop_rdma_mlx5_VL15_dropped), only for the allow-listed names upstream has.
_RDMA_COMPAT = ((A.RDMA_DEVICE_NAME, "device"), (A.RDMA_DEVICE_TYPE, "type"))
_RDMA_PORT_COMPAT = _RDMA_COMPAT + ((A.RDMA_PORT, "port"),)
RDMA_RESOURCES = tuple(
    InstrumentSpec(f"kubeskoop.rdma.{word}", U, unit, f"RDMA {desc} allocated on the device",
                   (A.RDMA_DEVICE_NAME, A.RDMA_DEVICE_TYPE), key=word, compat=f"kubeskoop_rdma_{word}",
                   compat_labels=_RDMA_COMPAT)
    for word, unit, desc in [
        ("cm_id", "{cm_id}", "connection manager IDs"),
        ("cq", "{completion_queue}", "completion queues"),
        ("ctx", "{context}", "user contexts"),
        ("mr", "{memory_region}", "memory regions"),
        ("pd", "{protection_domain}", "protection domains"),
        ("qp", "{queue_pair}", "queue pairs"),
        ("srq", "{shared_receive_queue}", "shared receive queues"),
    ]
)


def _rdma_counters(driver: str, rows: list[tuple[str, str, str]]) -> tuple[InstrumentSpec, ...]:
    return tuple(
        InstrumentSpec(f"kubeskoop.rdma.{driver}.{name}", C, unit, desc,
                       (A.RDMA_DEVICE_NAME, A.RDMA_DEVICE_TYPE, A.RDMA_PORT), key=name,
                       compat=f"kubeskoop_rdma_{driver}_{name}", compat_labels=_RDMA_PORT_COMPAT)
        for name, unit, desc in rows
    )


# IB PortCounters (counters/) and mlx5 hw_counters; data counters count 4-octet words (IBTA).
RDMA_MLX5 = _rdma_counters("mlx5", [
    ("port_rcv_data", "{dword}", "Data received on the port, in 4-octet words"),
    ("port_rcv_packets", "{packet}", "Packets received on the port, including errors"),
    ("multicast_rcv_packets", "{packet}", "Multicast packets received"),
    ("unicast_rcv_packets", "{packet}", "Unicast packets received"),
    ("port_xmit_data", "{dword}", "Data transmitted on the port, in 4-octet words"),
    ("port_xmit_packets", "{packet}", "Packets transmitted on the port"),
    ("port_xmit_packets_64", "{packet}", "Packets transmitted on the port (64-bit counter)"),
    ("port_rcv_switch_relay_errors", "{packet}", "Received packets the switch relay could not forward"),
    ("port_rcv_errors", "{packet}", "Packets received with errors"),
    ("port_rcv_constraint_errors", "{packet}", "Received packets dropped by partition or raw-packet enforcement"),
    ("local_link_integrity_errors", "{error}", "Times the local physical link error threshold was exceeded"),
    ("port_xmit_wait", "{tick}", "Ticks the port had data to send but no flow-control credits"),
    ("multicast_xmit_packets", "{packet}", "Multicast packets transmitted"),
    ("unicast_xmit_packets", "{packet}", "Unicast packets transmitted"),
    ("port_xmit_discards", "{packet}", "Outbound packets discarded (port down or congestion)"),
    ("port_xmit_constraint_errors", "{packet}", "Outbound packets dropped by partition or raw-packet enforcement"),
    ("port_rcv_remote_physical_errors", "{packet}", "Packets received marked with the EBP delimiter"),
    ("symbol_error", "{error}", "Minor link errors detected on physical lanes"),
    ("VL15_dropped", "{packet}", "Subnet management packets (VL15) dropped for lack of buffers"),
    ("link_error_recovery", "{event}", "Successful link error recoveries"),
    ("link_downed", "{event}", "Times the link error recovery failed and the link went down"),
    ("rx_write_requests", "{request}", "RDMA WRITE requests received"),
    ("rx_read_requests", "{request}", "RDMA READ requests received"),
    ("rx_atomic_requests", "{request}", "Atomic requests received"),
    ("out_of_buffer", "{packet}", "Packets dropped because no receive WQE was posted"),
    ("out_of_sequence", "{packet}", "Out-of-sequence packets received"),
    ("duplicate_request", "{packet}", "Duplicate requests received"),
    ("rnr_nak_retry_err", "{error}", "Receiver-not-ready NAKs that exhausted the retry count"),
    ("packet_seq_err", "{error}", "Sequence-error NAKs received"),
    ("implied_nak_seq_err", "{error}", "Implied NAK sequence errors (ACK with a larger PSN than expected)"),
    ("local_ack_timeout_err", "{error}", "ACK timer expiries for sent QPs"),
    ("rx_dct_connect", "{connection}", "DCT connect requests received"),
    ("resp_local_length_error", "{error}", "Responder local length errors"),
    ("resp_cqe_error", "{error}", "Responder completions with error"),
    ("req_cqe_error", "{error}", "Requester completions with error"),
    ("req_remote_invalid_request", "{error}", "Remote invalid request NAKs received by the requester"),
    ("req_remote_access_errors", "{error}", "Remote access error NAKs received by the requester"),
    ("resp_remote_access_errors", "{error}", "Remote access errors detected by the responder"),
    ("resp_cqe_flush_error", "{error}", "Responder completions flushed with error"),
    ("req_cqe_flush_error", "{error}", "Requester completions flushed with error"),
    ("roce_adp_retrans", "{event}", "RoCE adaptive retransmissions"),
    ("roce_adp_retrans_to", "{event}", "RoCE adaptive retransmission timeouts"),
    ("roce_slow_restart", "{event}", "RoCE slow restarts"),
    ("roce_slow_restart_cnps", "{packet}", "CNPs sent during RoCE slow restart"),
    ("roce_slow_restart_trans", "{event}", "RoCE slow restart transitions"),
    ("rp_cnp_ignored", "{packet}", "CNPs received and ignored by the reaction point"),
    ("rp_cnp_handled", "{packet}", "CNPs handled by the reaction point (rate reduced)"),
    ("np_ecn_marked_roce_packets", "{packet}", "ECN-marked RoCE packets received by the notification point"),
    ("np_cnp_sent", "{packet}", "CNPs sent by the notification point"),
    ("rx_icrc_encapsulated", "{packet}", "RoCE packets received with an ICRC error"),
])

# Alibaba Cloud eRDMA port statistics (hw_counters/; erdma_verbs.c rdma_stat_desc names).
RDMA_ERDMA = _rdma_counters("erdma", [
    ("accept_failed_cnt", "{connection}", "iWARP connection accepts that failed"),
    ("accept_success_cnt", "{connection}", "iWARP connection accepts that succeeded"),
    ("accept_total_cnt", "{connection}", "iWARP connection accepts"),
    ("cmdq_comp_cnt", "{command}", "Command-queue commands completed"),
    ("cmdq_cq_armed_cnt", "{event}", "Command-queue completion-queue arms"),
    ("cmdq_eq_event_cnt", "{event}", "Command-queue event-queue events"),
    ("cmdq_eq_notify_cnt", "{event}", "Command-queue event-queue notifications"),
    ("cmdq_submitted_cnt", "{command}", "Command-queue commands submitted"),
    ("connect_failed_cnt", "{connection}", "iWARP connects that failed"),
    ("connect_reset_cnt", "{connection}", "iWARP connects reset by the peer"),
    ("connect_success_cnt", "{connection}", "iWARP connects that succeeded"),
    ("connect_timeout_cnt", "{connection}", "iWARP connects that timed out"),
    ("connect_total_cnt", "{connection}", "iWARP connects"),
    ("erdma_aeq_event_cnt", "{event}", "Asynchronous event-queue events"),
    ("erdma_aeq_notify_cnt", "{event}", "Asynchronous event-queue notifications"),
    ("hw_bps_limit_drop_cnt", "{packet}", "Transmit packets dropped by the bandwidth limit"),
    ("hw_disable_drop_cnt", "{packet}", "Transmit packets dropped while the device was disabled"),
    ("hw_pps_limit_drop_cnt", "{packet}", "Transmit packets dropped by the packet-rate limit"),
    ("hw_rx_bps_limit_drop_cnt", "{packet}", "Received packets dropped by the bandwidth limit"),
    ("hw_rx_bytes_cnt", "By", "Bytes received by the hardware"),
    ("hw_rx_disable_drop_cnt", "{packet}", "Received packets dropped while the device was disabled"),
    ("hw_rx_packets_cnt", "{packet}", "Packets received by the hardware"),
    ("hw_rx_pps_limit_drop_cnt", "{packet}", "Received packets dropped by the packet-rate limit"),
    ("hw_tx_bytes_cnt", "By", "Bytes transmitted by the hardware"),
    ("hw_tx_packets_cnt", "{packet}", "Packets transmitted by the hardware"),
    ("hw_tx_reqs_cnt", "{request}", "Transmit requests submitted to the hardware"),
    ("listen_create_cnt", "{call}", "iWARP listens created"),
    ("listen_destroy_cnt", "{call}", "iWARP listens destroyed"),
    ("listen_failed_cnt", "{call}", "iWARP listens that failed"),
    ("listen_ipv6_cnt", "{call}", "iWARP IPv6 listens"),
    ("listen_success_cnt", "{call}", "iWARP listens that succeeded"),
    ("reject_cnt", "{connection}", "iWARP connection requests rejected"),
    ("reject_failed_cnt", "{connection}", "iWARP connection rejects that failed"),
    ("verbs_alloc_mr_cnt", "{call}", "alloc_mr verbs"),
    ("verbs_alloc_mr_failed_cnt", "{call}", "alloc_mr verbs that failed"),
    ("verbs_alloc_pd_cnt", "{call}", "alloc_pd verbs"),
    ("verbs_alloc_pd_failed_cnt", "{call}", "alloc_pd verbs that failed"),
    ("verbs_alloc_uctx_cnt", "{call}", "alloc_ucontext verbs"),
    ("verbs_alloc_uctx_failed_cnt", "{call}", "alloc_ucontext verbs that failed"),
    ("verbs_create_cq_cnt", "{call}", "create_cq verbs"),
    ("verbs_create_cq_failed_cnt", "{call}", "create_cq verbs that failed"),
    ("verbs_destroy_cq_failed_cnt", "{call}", "destroy_cq verbs that failed"),
    ("verbs_create_qp_cnt", "{call}", "create_qp verbs"),
    ("verbs_create_qp_failed_cnt", "{call}", "create_qp verbs that failed"),
    ("verbs_destroy_qp_cnt", "{call}", "destroy_qp verbs"),
    ("verbs_dealloc_pd_cnt", "{call}", "dealloc_pd verbs"),
    ("verbs_dealloc_uctx_cnt", "{call}", "dealloc_ucontext verbs"),
    ("verbs_dereg_mr_cnt", "{call}", "dereg_mr verbs"),
    ("verbs_dereg_mr_failed_cnt", "{call}", "dereg_mr verbs that failed"),
    ("verbs_destroy_cq_cnt", "{call}", "destroy_cq verbs"),
    ("verbs_destroy_qp_failed_cnt", "{call}", "destroy_qp verbs that failed"),
    ("verbs_get_dma_mr_cnt", "{call}", "get_dma_mr verbs"),
    ("verbs_get_dma_mr_failed_cnt", "{call}", "get_dma_mr verbs that failed"),
    ("verbs_reg_usr_mr_cnt", "{call}", "reg_user_mr verbs"),
    ("verbs_reg_usr_mr_failed_cnt", "{call}", "reg_user_mr verbs that failed"),
])
RDMA = RDMA_RESOURCES + RDMA_MLX5 + RDMA_ERDMA

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
# What each BPF program costs (config bpfStats.enabled: the kernel's BPF_ENABLE_STATS).
AGENT_BPF_RUNS = InstrumentSpec(
    "kubeskoop.agent.bpf.program.runs", C, "{run}", "Times the probe's BPF program ran", (A.PROBE, A.BPF_PROGRAM))
AGENT_BPF_TIME = InstrumentSpec(
    "kubeskoop.agent.bpf.program.time", C, "s", "CPU time spent in the probe's BPF program",
    (A.PROBE, A.BPF_PROGRAM))
AGENT = (AGENT_BPF_RUNS, AGENT_BPF_TIME, AGENT_EVENTS_DELIVERED, AGENT_EVENTS_LOST, AGENT_PROBE_DURATION, AGENT_PROBE_ERRORS, AGENT_PROBE_STATE, AGENT_NETNS_COUNT,
         AGENT_CYCLE_DURATION, AGENT_EXPORT_FAILURES)

ALL: tuple[InstrumentSpec, ...] = (
    TCP + UDP + IP + TCPEXT + NETDEV + NETDEV_STANDARD + SOCK + SOFTNET + IPVS + FD + IO + RDMA + AGENT
)
BY_NAME = {spec.name: spec for spec in ALL}
