# SPDX-License-Identifier: Apache-2.0
"""The one table of every event the agent emits: ``event_name``, upstream KubeSkoop type, the
attribute keys it may carry, and a description. Probes build :class:`~otel_kubeskoop.probe.Event`
from these specs; docs can be generated from this table as metrics are from ``instruments``.

Names are ``kubeskoop.<probe>.<type>``; the upstream type string (``TCPRESET_NOSOCK``...) rides
along as the ``kubeskoop.event.type`` attribute (``telemetry/events.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_kubeskoop.vocabulary import attributes as A


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    upstream_type: str
    description: str
    attributes: tuple[str, ...] = ()

    @property
    def probe(self) -> str:
        return self.name.split(".")[1]


_TUPLE = (A.NETWORK_TYPE, A.NETWORK_TRANSPORT, A.SOURCE_ADDRESS, A.SOURCE_PORT,
          A.DESTINATION_ADDRESS, A.DESTINATION_PORT)

PACKETLOSS_DROP = EventSpec(
    "kubeskoop.packetloss.drop", "PacketLoss",
    "The kernel dropped a packet: its reason, where (kernel symbol), the packet's addresses, the "
    "interface, and the kernel stack when enableStack is set",
    (A.DROP_REASON, A.DROP_LOCATION, *_TUPLE, A.NETWORK_INTERFACE_NAME, A.STACK))
PACKETLOSS = (PACKETLOSS_DROP,)

_RESET = (*_TUPLE, A.NETWORK_CONNECTION_STATE, A.RESET_TYPE, A.RESET_REASON)
TCPRESET_NOSOCK = EventSpec(
    "kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK",
    "A RST sent in answer to a packet that matched no socket (a closed port)", _RESET)
TCPRESET_PROCESS = EventSpec(
    "kubeskoop.tcpreset.process", "TCPRESET_PROCESS",
    "A RST sent in answer to a packet that matched a socket (bad sequence, time-wait...)", _RESET)
TCPRESET_ACTIVE = EventSpec(
    "kubeskoop.tcpreset.active", "TCPRESET_ACTIVE",
    "A RST the stack sent on its own: close with unread data, SO_LINGER 0, timeout, memory", _RESET)
TCPRESET_RECEIVE = EventSpec(
    "kubeskoop.tcpreset.receive", "TCPRESET_RECEIVE", "A socket received a RST", _RESET)
TCPRESET = (TCPRESET_NOSOCK, TCPRESET_PROCESS, TCPRESET_ACTIVE, TCPRESET_RECEIVE)

TCPRETRANS_RETRANSMIT = EventSpec(
    "kubeskoop.tcpretrans.retransmit", "TCPRetrans",
    "A TCP segment was retransmitted: its kind (syn, synack, loss, fast), the connection and its state",
    (*_TUPLE, A.NETWORK_CONNECTION_STATE, A.RETRANSMIT_TYPE))
TCPRETRANS = (TCPRETRANS_RETRANSMIT,)

# conntrack: ctnetlink multicast events per namespace (otel_kubeskoop/probes/conntrack.py).
_CONNTRACK = (*_TUPLE, A.CONNTRACK_STATE, A.CONNTRACK_REPLIED, A.CONNTRACK_ID)
CONNTRACK_NEW = EventSpec(
    "kubeskoop.conntrack.new", "ConntrackNew", "Conntrack created an entry for a new connection", _CONNTRACK)
CONNTRACK_UPDATE = EventSpec(
    "kubeskoop.conntrack.update", "ConntrackUpdate",
    "A conntrack entry changed: its TCP state, status bits (replied, assured) or NAT", _CONNTRACK)
CONNTRACK_DESTROY = EventSpec(
    "kubeskoop.conntrack.destroy", "ConntrackDestroy",
    "A conntrack entry was removed (timed out, closed, flushed or evicted)", _CONNTRACK)
CONNTRACK = (CONNTRACK_NEW, CONNTRACK_UPDATE, CONNTRACK_DESTROY)

# Latency probes: one event per interval above the probe's threshold (rate-limited in the kernel).
_NETIFTXLAT = (A.NETWORK_INTERFACE_NAME, A.LATENCY, A.LATENCY_STAGE, A.LATENCY_QDISC,
               A.LATENCY_XMIT, *_TUPLE, A.PACKET_BYTES, A.CPU_LOGICAL_NUMBER)
NETIFTXLAT_QDISC = EventSpec(
    "kubeskoop.netiftxlat.qdisc", "NETIFTXLAT_QDISC",
    "A packet waited in the interface's qdisc longer than the threshold (net_dev_queue to "
    "net_dev_start_xmit), with its addresses", _NETIFTXLAT)
NETIFTXLAT_XMIT = EventSpec(
    "kubeskoop.netiftxlat.xmit", "NETIFTXLAT_XMIT",
    "The driver took longer than the threshold to accept a packet (net_dev_start_xmit to "
    "net_dev_xmit); the packet's qdisc wait too, not its addresses (it may be freed by then)",
    _NETIFTXLAT)
NETIFTXLAT = (NETIFTXLAT_QDISC, NETIFTXLAT_XMIT)

_SOFTIRQ = (A.SOFTIRQ_TYPE, A.CPU_LOGICAL_NUMBER, A.LATENCY, A.LATENCY_STAGE, A.PROCESS_PID,
            A.PROCESS_COMMAND)
SOFTIRQ_SCHED_SLOW = EventSpec(
    "kubeskoop.softirq.sched_slow", "SOFTIRQ_SCHED_SLOW",
    "A softirq waited longer than the threshold (and at most 100 ms) from raise to entry", _SOFTIRQ)
SOFTIRQ_SCHED_100MS = EventSpec(
    "kubeskoop.softirq.sched_100ms", "SOFTIRQ_SCHED_100MS",
    "A softirq waited longer than 100 ms from raise to entry", _SOFTIRQ)
SOFTIRQ_EXECUTE_SLOW = EventSpec(
    "kubeskoop.softirq.execute_slow", "SOFTIRQ_EXCUTE_SLOW",
    "A softirq handler ran longer than the threshold (and at most 100 ms)", _SOFTIRQ)
SOFTIRQ_EXECUTE_100MS = EventSpec(
    "kubeskoop.softirq.execute_100ms", "SOFTIRQ_EXCUTE_100MS",
    "A softirq handler ran longer than 100 ms", _SOFTIRQ)
SOFTIRQ = (SOFTIRQ_SCHED_SLOW, SOFTIRQ_SCHED_100MS, SOFTIRQ_EXECUTE_SLOW, SOFTIRQ_EXECUTE_100MS)

BIOLATENCY_SLOW = EventSpec(
    "kubeskoop.biolatency.slow", "BIOLAT_10MS",
    "A block request took longer than the threshold from issue to completion: the disk, "
    "operation, size, and the task that issued it",
    (A.SYSTEM_DEVICE, A.BLOCK_OPERATION, A.LATENCY, A.BLOCK_BYTES, A.BLOCK_SECTOR, A.PROCESS_PID,
     A.PROCESS_COMMAND, A.KERNEL_THREAD, A.ERROR_TYPE))
BIOLATENCY = (BIOLATENCY_SLOW,)

_VIRTCMD = (A.NETWORK_INTERFACE_NAME, A.VIRTIO_CTRL_CLASS, A.VIRTIO_CTRL_COMMAND, A.LATENCY,
            A.CPU_LOGICAL_NUMBER, A.PROCESS_PID, A.PROCESS_COMMAND)
VIRTCMDLATENCY_SLOW = EventSpec(
    "kubeskoop.virtcmdlatency.slow", "VIRTCMDEXCUTE",
    "A virtio-net control command took longer than the threshold (and at most 100 ms)", _VIRTCMD)
VIRTCMDLATENCY_SLOW_100MS = EventSpec(
    "kubeskoop.virtcmdlatency.slow_100ms", "VIRTCMDEXCUTE_100MS",
    "A virtio-net control command took longer than 100 ms", _VIRTCMD)
VIRTCMDLATENCY = (VIRTCMDLATENCY_SLOW, VIRTCMDLATENCY_SLOW_100MS)

_SOCKETLAT = (*_TUPLE, A.NETWORK_CONNECTION_STATE, A.NETWORK_IO_DIRECTION, A.LATENCY,
              A.LATENCY_START, A.LATENCY_END, A.PROCESS_PID, A.PROCESS_COMMAND)
SOCKETLATENCY_READSLOW = EventSpec(
    "kubeskoop.socketlatency.readslow", "SOCKETLAT_READSLOW",
    "Data waited in a TCP socket's receive queue longer than the threshold before the "
    "application read it: the connection, the wait, and the reading process", _SOCKETLAT)
SOCKETLATENCY_SENDSLOW = EventSpec(
    "kubeskoop.socketlatency.sendslow", "SOCKETLAT_SENDSLOW",
    "Data the application wrote waited in a TCP socket longer than the threshold before leaving "
    "for the device: the connection, the wait, and the writing process", _SOCKETLAT)
SOCKETLATENCY = (SOCKETLATENCY_READSLOW, SOCKETLATENCY_SENDSLOW)

_KERNELLAT = (*_TUPLE, A.NETWORK_INTERFACE_NAME, A.NETWORK_IO_DIRECTION, A.LATENCY,
              A.LATENCY_START, A.LATENCY_END, A.PACKET_BYTES)
KERNELLATENCY_RXSLOW = EventSpec(
    "kubeskoop.kernellatency.rxslow", "RXKERNEL_SLOW",
    "A received TCP packet took longer than the threshold from the device to its socket",
    _KERNELLAT)
KERNELLATENCY_TXSLOW = EventSpec(
    "kubeskoop.kernellatency.txslow", "TXKERNEL_SLOW",
    "A TCP data segment took longer than the threshold from TCP to the device queue", _KERNELLAT)
KERNELLATENCY = (KERNELLATENCY_RXSLOW, KERNELLATENCY_TXSLOW)

ALL: tuple[EventSpec, ...] = (PACKETLOSS + TCPRESET + TCPRETRANS + CONNTRACK + NETIFTXLAT + SOFTIRQ
                              + BIOLATENCY + VIRTCMDLATENCY + SOCKETLATENCY + KERNELLATENCY)
BY_NAME = {spec.name: spec for spec in ALL}
