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
