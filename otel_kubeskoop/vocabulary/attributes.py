# SPDX-License-Identifier: Apache-2.0
"""Attribute keys used on resources, data points and events (semconv where a name exists)."""

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
K8S_NAMESPACE_NAME = "k8s.namespace.name"
K8S_POD_NAME = "k8s.pod.name"
K8S_POD_UID = "k8s.pod.uid"
K8S_POD_IP = "k8s.pod.ip"
K8S_POD_START_TIME = "k8s.pod.start_time"
# RDMA (no semconv): the device as named in /sys/class/infiniband, its driver family from the name
# prefix (mlx5, erdma, unknown) and the port number.
RDMA_DEVICE_NAME = "kubeskoop.rdma.device.name"
RDMA_DEVICE_TYPE = "kubeskoop.rdma.device.type"
RDMA_PORT = "kubeskoop.rdma.port"

# Packet and connection attributes (semconv network.*, source.*, destination.*).
NETWORK_TRANSPORT = "network.transport"  # tcp, udp, icmp, ... (see probes/_bpf.py)
NETWORK_TYPE = "network.type"  # ipv4, ipv6
NETWORK_CONNECTION_STATE = "network.connection.state"  # semconv TCP state values
SOURCE_ADDRESS = "source.address"
SOURCE_PORT = "source.port"
DESTINATION_ADDRESS = "destination.address"
DESTINATION_PORT = "destination.port"

# Ours: what the kernel said about a drop, a reset or a retransmission.
DROP_REASON = "kubeskoop.drop.reason"  # enum skb_drop_reason name without prefix: NO_SOCKET
DROP_LOCATION = "kubeskoop.drop.location"  # kernel symbol+offset: tcp_v4_rcv+0x1a2
RESET_TYPE = "kubeskoop.reset.type"  # nosock, process, active, receive
RESET_REASON = "kubeskoop.reset.reason"  # enum sk_rst_reason name without prefix: NO_SOCKET
RETRANSMIT_TYPE = "kubeskoop.retransmit.type"  # syn, synack, loss, fast
STACK = "kubeskoop.stack"  # kernel stack, innermost first, as symbol+offset strings
BPF_MAP = "kubeskoop.bpf.map"  # a probe's BPF map name

# Netlink probes: qdisc identity (as tc prints it) and conntrack event fields.
QDISC_KIND = "kubeskoop.qdisc.kind"  # tbf, fq_codel, noqueue, ...
QDISC_HANDLE = "kubeskoop.qdisc.handle"  # 8001:
QDISC_PARENT = "kubeskoop.qdisc.parent"  # root, 1:10, ffff:fff1 (ingress)
CONNTRACK_STATE = "kubeskoop.conntrack.state"  # the conntrack TCP/SCTP state: established, time_wait
CONNTRACK_REPLIED = "kubeskoop.conntrack.replied"  # bool: traffic seen in both directions
CONNTRACK_ID = "kubeskoop.conntrack.id"  # int: the same for every event of one entry

# Latency probes (netiftxlat, softirq, biolatency, virtcmdlatency).
LATENCY = "kubeskoop.latency"  # double, seconds: the interval an event is about
LATENCY_START = "kubeskoop.latency.start"  # the attach point that starts the interval: tp_btf/netif_receive_skb
LATENCY_END = "kubeskoop.latency.end"  # the attach point that ends it: tp_btf/tcp_probe
FLOW_OVERFLOW = "kubeskoop.flow.overflow"  # bool: the series holds the flows past the cap
LATENCY_STAGE = "kubeskoop.latency.stage"  # qdisc, xmit (netiftxlat); delay, runtime (softirq)
LATENCY_QDISC = "kubeskoop.latency.qdisc"  # double, s: a packet's wait in the qdisc
LATENCY_XMIT = "kubeskoop.latency.xmit"  # double, s: a packet's time in the driver's xmit
SOFTIRQ_TYPE = "kubeskoop.softirq.type"  # hi, timer, net_tx, net_rx, block, ... (upstream names)
PACKET_BYTES = "kubeskoop.packet.bytes"  # int: skb->len
SYSTEM_DEVICE = "system.device"  # semconv (system.disk.*): a block device's name, loop1
BLOCK_OPERATION = "kubeskoop.block.operation"  # read, write, flush, discard, other
BLOCK_BYTES = "kubeskoop.block.bytes"  # int: a block request's size
BLOCK_SECTOR = "kubeskoop.block.sector"  # int: a block request's first sector
PROCESS_PID = "process.pid"  # semconv: the task's thread group id
PROCESS_COMMAND = "process.command"  # semconv: the task's command name (kernel comm, 15 chars)
KERNEL_THREAD = "kubeskoop.task.kernel_thread"  # bool: the task was a kernel thread
VIRTIO_CTRL_CLASS = "kubeskoop.virtio.ctrl.class"  # rx, mac, vlan, announce, mq, ...
VIRTIO_CTRL_COMMAND = "kubeskoop.virtio.ctrl.command"  # int: the class's command number
