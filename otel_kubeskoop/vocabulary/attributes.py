# SPDX-License-Identifier: Apache-2.0
"""Attribute keys the framework or several probes use, on resources, data points and events
(semconv where a name exists). A key only one probe uses is declared in that probe's module."""

# Resource attributes (semconv k8s.*, host.*, service.*; ours under kubeskoop.*).
HOST_NAME = "host.name"
K8S_CLUSTER_NAME = "k8s.cluster.name"
K8S_NODE_NAME = "k8s.node.name"
SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"
SERVICE_INSTANCE_ID = "service.instance.id"
SERVICE_VERSION = "service.version"
NETNS_INODE = "kubeskoop.netns.inode"
NETNS_NAME = "kubeskoop.netns.name"

# Data point attributes.
NETWORK_INTERFACE_NAME = "network.interface.name"
NETWORK_IO_DIRECTION = "network.io.direction"
CPU_LOGICAL_NUMBER = "cpu.logical_number"
ERROR_TYPE = "error.type"
PROBE = "kubeskoop.probe"
PROBE_STATE = "kubeskoop.probe.state"
LOSS_REASON = "kubeskoop.loss.reason"
BPF_PROGRAM = "kubeskoop.bpf.program"
SIGNAL = "kubeskoop.signal"
CAP = "kubeskoop.cap"  # kubeskoop.agent.overflow{kubeskoop.cap}: which cap on tracked state
RELOAD_RESULT = "result"  # kubeskoop.agent.config.reloads{result}
K8S_NAMESPACE_NAME = "k8s.namespace.name"
K8S_POD_NAME = "k8s.pod.name"
K8S_POD_UID = "k8s.pod.uid"
K8S_POD_IP = "k8s.pod.ip"
K8S_POD_START_TIME = "k8s.pod.start_time"

# Packet and connection attributes (semconv network.*, source.*, destination.*).
NETWORK_TRANSPORT = "network.transport"  # tcp, udp, icmp, ... (see probes/_decode.py)
NETWORK_TYPE = "network.type"  # ipv4, ipv6
NETWORK_CONNECTION_STATE = "network.connection.state"  # semconv TCP state values
SOURCE_ADDRESS = "source.address"
SOURCE_PORT = "source.port"
DESTINATION_ADDRESS = "destination.address"
DESTINATION_PORT = "destination.port"
# A packet's or connection's addresses, as the eBPF and conntrack events carry them.
TUPLE = (NETWORK_TYPE, NETWORK_TRANSPORT, SOURCE_ADDRESS, SOURCE_PORT, DESTINATION_ADDRESS, DESTINATION_PORT)

BPF_MAP = "kubeskoop.bpf.map"  # a probe's BPF map name

# A connection's peer as a bounded label (tcprtt, tcpconnect; topology/remotes.py): its kind
# (pod, service, node, loopback, external, overflow), and for a pod or Service its namespace and
# name, for the node its name. Not semconv's server.address/network.peer.address: one series per
# address would be unbounded.
REMOTE_KIND = "kubeskoop.remote.kind"
REMOTE_NAMESPACE = "kubeskoop.remote.namespace"
REMOTE_NAME = "kubeskoop.remote.name"
REMOTE = (REMOTE_KIND, REMOTE_NAMESPACE, REMOTE_NAME)

# Latency probes (netiftxlat, softirq, biolatency, virtcmdlatency, socketlatency, kernellatency).
LATENCY = "kubeskoop.latency"  # double, seconds: the interval an event is about
LATENCY_START = "kubeskoop.latency.start"  # the attach point that starts the interval: tp_btf/netif_receive_skb
LATENCY_END = "kubeskoop.latency.end"  # the attach point that ends it: tp_btf/tcp_probe
LATENCY_STAGE = "kubeskoop.latency.stage"  # qdisc, xmit (netiftxlat); delay, runtime (softirq)
PACKET_BYTES = "kubeskoop.packet.bytes"  # int: skb->len
PROCESS_PID = "process.pid"  # semconv: the task's thread group id
PROCESS_COMMAND = "process.command"  # semconv: the task's command name (kernel comm, 15 chars)
