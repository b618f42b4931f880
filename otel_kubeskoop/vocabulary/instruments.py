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

from otel_kubeskoop.vocabulary import attributes as A


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

# eBPF probes: counters aggregated in the kernel per namespace (bpf/<probe>.bpf.c "counters").
# Upstream's metric word is "total", so the Prometheus form of kubeskoop.packetloss.total is
# upstream's kubeskoop_packetloss_total (Prometheus' translator adds _total only once).
_DROP = (A.DROP_REASON, A.NETWORK_TYPE, A.NETWORK_TRANSPORT)
_L3L4 = (A.NETWORK_TYPE, A.NETWORK_TRANSPORT)
PACKETLOSS_TOTAL = InstrumentSpec(
    "kubeskoop.packetloss.total", C, "{packet}",
    "Packets the kernel dropped (skb:kfree_skb), by the kernel's drop reason; frees that are not "
    "drops (SKB_CONSUMED) are not counted", _DROP, key="drop",
    compat="kubeskoop_packetloss_total")
PACKETLOSS_NETFILTER = InstrumentSpec(
    "kubeskoop.packetloss.netfilter", C, "{packet}",
    "Packets dropped by netfilter (iptables/nftables rules): the NETFILTER_DROP subset of "
    "kubeskoop.packetloss.total", _L3L4, key="NETFILTER_DROP",
    compat="kubeskoop_packetloss_netfilter")
PACKETLOSS = (PACKETLOSS_TOTAL, PACKETLOSS_NETFILTER)

TCPRESET_TOTAL = InstrumentSpec(
    "kubeskoop.tcpreset.total", C, "{segment}",
    "TCP resets sent (nosock, process, active) and received (receive)", (A.RESET_TYPE,),
    key="reset")
TCPRESET = (TCPRESET_TOTAL,)

TCPRETRANS_TOTAL = InstrumentSpec(
    "kubeskoop.tcpretrans.total", C, "{segment}",
    "TCP segments retransmitted, by kind: syn, synack, loss (after a retransmission timeout), "
    "fast (any other)", (A.RETRANSMIT_TYPE,), key="retransmit",
    compat="kubeskoop_tcpretrans_total")
TCPRETRANS = (TCPRETRANS_TOTAL,)

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
TCPSUMMARY = TCPSUMMARY_STATES + (TCPSUMMARY_CONN,) + TCPSUMMARY_QUEUES + TCPSUMMARY_LISTEN

# qdisc: RTM_GETQDISC per namespace, one series per qdisc (parent and child qdiscs apart).
_QDISC = (A.NETWORK_INTERFACE_NAME, A.QDISC_KIND, A.QDISC_HANDLE, A.QDISC_PARENT)
QDISC = tuple(
    InstrumentSpec(f"kubeskoop.qdisc.{word}", kind, unit, desc, _QDISC, key=word,
                   compat=f"kubeskoop_qdisc_{word}" if compat else None, compat_exclude=_NO_LO)
    for word, kind, unit, desc, compat in [
        ("bytes", C, "By", "Bytes the qdisc sent", True),
        ("packets", C, "{packet}", "Packets the qdisc sent", True),
        ("drops", C, "{packet}", "Packets the qdisc dropped (queue full, policer, AQM)", True),
        ("requeues", C, "{packet}", "Packets the driver handed back to the qdisc to send again", False),
        ("overlimits", C, "{event}", "Times the qdisc was over its limit (a shaper delayed or dropped a packet)", True),
        ("qlen", U, "{packet}", "Packets queued in the qdisc now", True),
        ("backlog", U, "By", "Bytes queued in the qdisc now", True),
    ]
)

# conntrack: ctnetlink statistics per namespace (per-CPU counters summed); maxentries is the
# node-wide nf_conntrack_max and goes to the node.
CONNTRACK = tuple(
    InstrumentSpec(f"kubeskoop.conntrack.{word}", kind, unit, desc, key=key,
                   compat=f"kubeskoop_conntrack_{word}" if compat else None)
    for word, key, kind, unit, desc, compat in [
        ("found", "found", C, "{packet}", "Conntrack lookups that found an existing entry", True),
        ("invalid", "invalid", C, "{packet}", "Packets conntrack could not track (invalid)", True),
        ("ignore", "ignore", C, "{packet}", "Packets already attached to an entry or untracked (not looked up)", True),
        ("insert", "insert", C, "{entry}", "Entries inserted into the conntrack table", True),
        ("insertfailed", "insert_failed", C, "{packet}",
         "Packets whose new entry could not be inserted (a clash, e.g. a NAT port race); the packet is dropped", True),
        ("drop", "drop", C, "{packet}", "Packets dropped because conntrack failed (no memory, helper refused)", True),
        ("earlydrop", "early_drop", C, "{entry}", "Entries evicted early to make room when the table was full", True),
        ("error", "error", C, "{packet}", "Packets conntrack could not track because of an error (ICMP errors)", True),
        ("searchrestart", "search_restart", C, "{lookup}", "Table lookups restarted because the table was resized", True),
        ("clashresolve", "clash_resolve", C, "{entry}", "Insert clashes conntrack resolved without dropping the packet", False),
        ("chaintoolong", "chain_toolong", C, "{entry}", "Entries refused because their hash chain was too long", False),
        ("entries", "entries", U, "{entry}", "Entries in the namespace's conntrack table now", True),
        ("maxentries", "max_entries", G, "{entry}", "Size limit of the conntrack table (nf_conntrack_max, node-wide)", True),
    ]
)
CONNTRACK_MAXENTRIES = next(spec for spec in CONNTRACK if spec.key == "max_entries")

# Latency probes: log2 histograms kept in the kernel (bpf/include/latency.h), exported as OTel
# histograms in seconds (buckets 2^(i+1) ns), plus upstream's threshold counters, which the kernel
# counts (>10 ms and >100 ms are not bucket bounds).
H = InstrumentKind.HISTOGRAM
_IF_STAGE = (A.NETWORK_INTERFACE_NAME, A.LATENCY_STAGE)
NETIFTXLAT_DURATION = InstrumentSpec(
    "kubeskoop.netiftxlat.duration", H, "s",
    "Packet transmit latency per interface, by stage: qdisc (net:net_dev_queue to "
    "net:net_dev_start_xmit, waiting in the qdisc) and xmit (net:net_dev_start_xmit to "
    "net:net_dev_xmit, in the driver's ndo_start_xmit)", _IF_STAGE)
NETIFTXLAT_QDISCSLOW100MS = InstrumentSpec(
    "kubeskoop.netiftxlat.qdiscslow100ms", C, "{packet}",
    "Packets that waited more than 100 ms in the qdisc (net_dev_queue to net_dev_start_xmit)",
    (A.NETWORK_INTERFACE_NAME,), key="qdisc", compat="kubeskoop_netiftxlat_qdiscslow100ms")
NETIFTXLAT_NETDEVSLOW100MS = InstrumentSpec(
    "kubeskoop.netiftxlat.netdevslow100ms", C, "{packet}",
    "Packets the driver took more than 100 ms to accept (net_dev_start_xmit to net_dev_xmit)",
    (A.NETWORK_INTERFACE_NAME,), key="xmit", compat="kubeskoop_netiftxlat_netdevslow100ms")
NETIFTXLAT = (NETIFTXLAT_DURATION, NETIFTXLAT_QDISCSLOW100MS, NETIFTXLAT_NETDEVSLOW100MS)

# Upstream labels softirq series with the type (summed over CPUs and stages of a counter).
_SOFTIRQ_COMPAT = ((A.SOFTIRQ_TYPE, "softirq_type"),)
_SOFTIRQ = (A.CPU_LOGICAL_NUMBER, A.SOFTIRQ_TYPE)
SOFTIRQ_DURATION = InstrumentSpec(
    "kubeskoop.softirq.duration", H, "s",
    "Softirq latency per type and CPU, by stage: delay (irq:softirq_raise to irq:softirq_entry, "
    "raised but not yet running) and runtime (irq:softirq_entry to irq:softirq_exit)",
    (*_SOFTIRQ, A.LATENCY_STAGE))
SOFTIRQ_SCHEDSLOW = InstrumentSpec(
    "kubeskoop.softirq.schedslow", C, "{softirq}",
    "Softirqs that waited more than 10 ms from raise to entry", _SOFTIRQ,
    key="delay.0", compat="kubeskoop_softirq_schedslow",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_SCHEDSLOW100MS = InstrumentSpec(
    "kubeskoop.softirq.schedslow100ms", C, "{softirq}",
    "Softirqs that waited more than 100 ms from raise to entry", _SOFTIRQ,
    key="delay.1", compat="kubeskoop_softirq_schedslow100ms",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_EXCUTESLOW = InstrumentSpec(
    "kubeskoop.softirq.excuteslow", C, "{softirq}",
    "Softirq handler runs longer than 10 ms (upstream's spelling)", _SOFTIRQ,
    key="runtime.0", compat="kubeskoop_softirq_excuteslow",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_EXCUTESLOW100MS = InstrumentSpec(
    "kubeskoop.softirq.excuteslow100ms", C, "{softirq}",
    "Softirq handler runs longer than 100 ms (upstream's spelling)", _SOFTIRQ,
    key="runtime.1", compat="kubeskoop_softirq_excuteslow100ms",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ = (SOFTIRQ_DURATION, SOFTIRQ_SCHEDSLOW, SOFTIRQ_SCHEDSLOW100MS, SOFTIRQ_EXCUTESLOW,
           SOFTIRQ_EXCUTESLOW100MS)

BIOLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.biolatency.duration", H, "s",
    "Block request latency from block:block_rq_issue to block:block_rq_complete, by disk and "
    "operation, on the namespace of the task that issued the request",
    (A.SYSTEM_DEVICE, A.BLOCK_OPERATION))
BIOLATENCY = (BIOLATENCY_DURATION,)

_VIRTIO = (A.NETWORK_INTERFACE_NAME, A.VIRTIO_CTRL_CLASS)
VIRTCMDLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.virtcmdlatency.duration", H, "s",
    "virtio-net control command latency, entry to return of virtnet_send_command(_reply)",
    _VIRTIO)
VIRTCMDLATENCY_LATENCY = InstrumentSpec(
    "kubeskoop.virtcmdlatency.latency", C, "{command}",
    "virtio-net control commands slower than 10 ms", _VIRTIO, key="0",
    compat="kubeskoop_virtcmdlatency_latency")
VIRTCMDLATENCY_LATENCY100MS = InstrumentSpec(
    "kubeskoop.virtcmdlatency.latency100ms", C, "{command}",
    "virtio-net control commands slower than 100 ms", _VIRTIO, key="1",
    compat="kubeskoop_virtcmdlatency_latency100ms")
VIRTCMDLATENCY = (VIRTCMDLATENCY_DURATION, VIRTCMDLATENCY_LATENCY, VIRTCMDLATENCY_LATENCY100MS)

# socketlatency and kernellatency: log2 histograms per (namespace, direction) as above; the
# upstream counters count intervals above the kernel's fixed thresholds, per namespace.
_DIR = (A.NETWORK_IO_DIRECTION,)
SOCKETLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.socketlatency.duration", H, "s",
    "Time TCP data waited in a socket: receive, from arriving on a socket with nothing unread "
    "(sock:sk_data_ready) to the application's read (sock:sock_recv_length); transmit, from the "
    "application's write on a socket with nothing unsent (tcp:tcp_sendmsg_locked) to its next "
    "segment of new data reaching the device (net:net_dev_queue)", _DIR)
SOCKETLATENCY_COUNTERS = tuple(
    InstrumentSpec(f"kubeskoop.socketlatency.{word}", C, unit, desc, key=key,
                   compat=f"kubeskoop_socketlatency_{word}")
    for word, key, unit, desc in [
        ("read1ms", "read.0", "{read}", "Reads whose data had waited more than 1 ms in the receive queue (includes read100ms)"),
        ("read100ms", "read.1", "{read}", "Reads whose data had waited more than 100 ms in the receive queue"),
        ("write1ms", "write.0", "{write}", "Writes whose data waited more than 1 ms before leaving the socket (includes write100ms)"),
        ("write100ms", "write.1", "{write}", "Writes whose data waited more than 100 ms before leaving the socket"),
    ]
)
SOCKETLATENCY = (SOCKETLATENCY_DURATION,) + SOCKETLATENCY_COUNTERS

KERNELLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.kernellatency.duration", H, "s",
    "Time TCP packets spent in the kernel's network stack: receive, from net:netif_receive_skb to "
    "the established socket (tcp:tcp_probe); transmit, from TCP handing a data segment to IP "
    "(its departure stamp, skb->tstamp) to net:net_dev_queue", _DIR)
KERNELLATENCY_COUNTERS = tuple(
    InstrumentSpec(f"kubeskoop.kernellatency.{word}", C, "{packet}", desc, key=key,
                   compat=f"kubeskoop_kernellatency_{word}")
    for word, key, desc in [
        ("rxslow", "rx.0", "Received TCP packets that took more than 10 ms from the device to their socket (includes rxslow100ms)"),
        ("rxslow100ms", "rx.1", "Received TCP packets that took more than 100 ms from the device to their socket"),
        ("txslow", "tx.0", "TCP data segments that took more than 10 ms from TCP to the device queue (includes txslow100ms)"),
        ("txslow100ms", "tx.1", "TCP data segments that took more than 100 ms from TCP to the device queue"),
    ]
)
KERNELLATENCY = (KERNELLATENCY_DURATION,) + KERNELLATENCY_COUNTERS

# flow: per pod namespace and IP flow, from TC programs on the pod's interfaces (ports only with
# enablePortInLabel). A namespace's series are capped; flows past the cap add to one overflow
# series per direction (kubeskoop.flow.overflow=true), and are counted.
_FLOW = (A.NETWORK_IO_DIRECTION, A.NETWORK_TYPE, A.NETWORK_TRANSPORT, A.SOURCE_ADDRESS,
         A.SOURCE_PORT, A.DESTINATION_ADDRESS, A.DESTINATION_PORT, A.FLOW_OVERFLOW)
# Upstream's tuple labels (its src_type/_node/_namespace/_pod and dst_* need an IP -> pod lookup
# this table cannot express); the observing pod's standard labels keep the two ends apart.
_FLOW_COMPAT = ((A.NETWORK_TRANSPORT, "protocol"), (A.SOURCE_ADDRESS, "src"),
                (A.DESTINATION_ADDRESS, "dst"), (A.SOURCE_PORT, "sport"),
                (A.DESTINATION_PORT, "dport"))
FLOW_BYTES = InstrumentSpec(
    "kubeskoop.flow.bytes", C, "By",
    "Bytes of IP packets on the pod's interfaces (frames with their link-layer header), by "
    "direction (receive: tc ingress, transmit: tc egress) and flow", _FLOW, key="bytes",
    compat="kubeskoop_flow_bytes", compat_labels=_FLOW_COMPAT)
FLOW_PACKETS = InstrumentSpec(
    "kubeskoop.flow.packets", C, "{packet}",
    "IP packets on the pod's interfaces, by direction and flow (a GSO packet counts as its "
    "segments)", _FLOW, key="packets", compat="kubeskoop_flow_packets",
    compat_labels=_FLOW_COMPAT)
FLOW_OVERFLOW_FLOWS = InstrumentSpec(
    "kubeskoop.flow.overflow.flows", C, "{flow}",
    "Flows counted in the namespace's overflow series because it already had maxSeries series")
FLOW_INTERFACES = InstrumentSpec(
    "kubeskoop.flow.interfaces", U, "{interface}",
    "Interfaces of the namespace with the probe's TC programs attached")
FLOW = (FLOW_BYTES, FLOW_PACKETS, FLOW_OVERFLOW_FLOWS, FLOW_INTERFACES)

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
    "Events not delivered, by reason: rate_limited, ring_buffer_full, socket_buffer_full, "
    "decode_error, export_queue_full",
    (A.PROBE, A.LOSS_REASON))
# What each BPF program costs (config bpfStats.enabled: the kernel's BPF_ENABLE_STATS).
AGENT_BPF_RUNS = InstrumentSpec(
    "kubeskoop.agent.bpf.program.runs", C, "{run}", "Times the probe's BPF program ran", (A.PROBE, A.BPF_PROGRAM))
AGENT_BPF_TIME = InstrumentSpec(
    "kubeskoop.agent.bpf.program.time", C, "s", "CPU time spent in the probe's BPF program",
    (A.PROBE, A.BPF_PROGRAM))
# A BPF probe's counter map was full: increments that found no room (the probe reports them).
AGENT_BPF_MAP_FULL = InstrumentSpec(
    "kubeskoop.agent.bpf.map.full", C, "{update}",
    "Kernel counter or histogram updates refused because the probe's BPF map was full",
    (A.PROBE, A.BPF_MAP))
# A latency probe's in-flight table (start records) gave a record's slot to another key before
# the record's end point: that interval is lost (counted in the kernel, latency.bpf.h).
AGENT_BPF_INFLIGHT_EVICTED = InstrumentSpec(
    "kubeskoop.agent.bpf.inflight.evicted", C, "{entry}",
    "Start records a latency probe's in-flight table evicted before their end point",
    (A.PROBE, A.BPF_MAP))
# A probe's LRU map (flow) evicted keys to make room: what they counted since the last read is lost.
AGENT_BPF_MAP_EVICTED = InstrumentSpec(
    "kubeskoop.agent.bpf.map.evicted", C, "{entry}",
    "Keys a probe's BPF LRU map evicted to make room for new ones (their counts since the last "
    "collection are lost)", (A.PROBE, A.BPF_MAP))
AGENT = (AGENT_BPF_MAP_EVICTED, AGENT_BPF_INFLIGHT_EVICTED, AGENT_BPF_MAP_FULL, AGENT_BPF_RUNS, AGENT_BPF_TIME, AGENT_EVENTS_DELIVERED, AGENT_EVENTS_LOST, AGENT_PROBE_DURATION, AGENT_PROBE_ERRORS, AGENT_PROBE_STATE, AGENT_NETNS_COUNT,
         AGENT_CYCLE_DURATION, AGENT_EXPORT_FAILURES)

ALL: tuple[InstrumentSpec, ...] = (
    TCP + UDP + IP + TCPEXT + NETDEV + NETDEV_STANDARD + SOCK + SOFTNET + IPVS + FD + IO + RDMA + PACKETLOSS + TCPRESET + TCPRETRANS
    + TCPSUMMARY + QDISC + CONNTRACK + NETIFTXLAT + SOFTIRQ + BIOLATENCY + VIRTCMDLATENCY + SOCKETLATENCY + KERNELLATENCY + FLOW + AGENT
)
BY_NAME = {spec.name: spec for spec in ALL}
