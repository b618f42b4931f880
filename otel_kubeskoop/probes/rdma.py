# SPDX-License-Identifier: Apache-2.0
"""rdma: RDMA device resources and port counters (node scope, host only, like upstream).

- Resources per device (``qp``, ``mr``, ``cq``, ``pd``, ``cm_id``, ``ctx``, ``srq`` in use) from
  the RDMA netlink resource summary (:mod:`otel_kubeskoop.netlink.rdma`).
- Counters per device and port from ``/sys/class/infiniband/<dev>/ports/<n>/counters`` and
  ``hw_counters`` (:mod:`otel_kubeskoop.procfs.sys_infiniband`), for the mlx5 and erdma names
  upstream exports. Upstream read the hw counters over RDMA netlink (``RDMA_NLDEV_CMD_STAT_GET``);
  ``hw_counters`` are the same ``rdma_hw_stats``. Counters of other names, and of devices of other
  drivers, are not exported (upstream logs them as "undeclared metrics").

The device type is the name prefix (``mlx5``, ``erdma``, else ``unknown``), as upstream. The probe
is unavailable when the node has no RDMA device.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

from otel_kubeskoop.netlink.rdma import DecodeError, ResSummary, dump_res_summary
from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source, Unavailable
from otel_kubeskoop.procfs import sys_infiniband as ib
from otel_kubeskoop.vocabulary.instruments import C, U, InstrumentSpec

# RDMA (no semconv): the device as named in /sys/class/infiniband, its driver family from the name
# prefix (mlx5, erdma, unknown) and the port number.
RDMA_DEVICE_NAME = "kubeskoop.rdma.device.name"
RDMA_DEVICE_TYPE = "kubeskoop.rdma.device.type"
RDMA_PORT = "kubeskoop.rdma.port"

# RDMA, node scope. Resource counts from RDMA netlink (RDMA_NLDEV_CMD_RES_GET summary) per device;
# port counters from /sys/class/infiniband/<dev>/ports/<n>/{counters,hw_counters}/<name>, keeping
# the driver's casing (kubeskoop_rdma_mlx5_VL15_dropped), only for the allow-listed names upstream has.
_RDMA_COMPAT = ((RDMA_DEVICE_NAME, "device"), (RDMA_DEVICE_TYPE, "type"))
_RDMA_PORT_COMPAT = _RDMA_COMPAT + ((RDMA_PORT, "port"),)
RDMA_RESOURCES = tuple(
    InstrumentSpec(f"kubeskoop.rdma.{word}", U, unit, f"RDMA {desc} allocated on the device",
                   (RDMA_DEVICE_NAME, RDMA_DEVICE_TYPE), key=word, compat=f"kubeskoop_rdma_{word}",
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
                       (RDMA_DEVICE_NAME, RDMA_DEVICE_TYPE, RDMA_PORT), key=name,
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
INSTRUMENTS = RDMA_RESOURCES + RDMA_MLX5 + RDMA_ERDMA


log = logging.getLogger(__name__)

COUNTERS = {"mlx5": {s.key: s for s in RDMA_MLX5}, "erdma": {s.key: s for s in RDMA_ERDMA}}


class RdmaProbe:
    def __init__(self, args: Any, ctx: ProbeContext,
                 res_summary: Callable[[], list[ResSummary]] = dump_res_summary) -> None:
        """``res_summary`` reads the netlink resource summary (tests hand in decoded fixtures)."""
        self.ctx = ctx
        self.res_summary = res_summary
        self.netlink = True

    def start(self) -> None:
        root = os.path.join(self.ctx.sys_root, ib.RELPATH)
        try:
            devices = ib.list_devices(self.ctx.sys_root)
        except FileNotFoundError:
            raise Unavailable(f"{root} does not exist: no RDMA device (or the kernel has no RDMA support)") from None
        if not devices:
            raise Unavailable(f"{root} is empty: no RDMA device")

    def stop(self) -> None:
        pass

    def _resources(self) -> list[Sample]:
        if not self.netlink:
            return []
        try:
            summaries = self.res_summary()
        except OSError as exc:
            if exc.errno == errno.EPROTONOSUPPORT:
                log.info("rdma: no RDMA netlink in this kernel; resource counts are not reported")
                self.netlink = False
                return []
            self.ctx.report(exc)
            return []
        except DecodeError as exc:
            self.ctx.report(exc)
            return []
        out = []
        for dev in summaries:
            attrs = ((RDMA_DEVICE_NAME, dev.name), (RDMA_DEVICE_TYPE, ib.device_type(dev.name)))
            for spec in RDMA_RESOURCES:
                value = dev.counts.get(spec.key)
                if value is not None:
                    out.append(Sample(spec, value, None, attrs))
        return out

    def collect(self) -> list[Sample]:
        out = self._resources()
        try:
            devices = ib.list_devices(self.ctx.sys_root)
        except FileNotFoundError:
            return out
        for device in devices:
            dtype = ib.device_type(device)
            known = COUNTERS.get(dtype)
            if known is None:
                continue
            try:
                ports = ib.list_ports(self.ctx.sys_root, device)
            except FileNotFoundError:
                continue  # removed meanwhile
            for port in ports:
                errors: list[BaseException] = []
                try:
                    values = ib.read_port_counters(self.ctx.sys_root, device, port, errors)
                except FileNotFoundError:
                    continue
                for exc in errors:
                    self.ctx.report(exc)
                attrs = ((RDMA_DEVICE_NAME, device), (RDMA_DEVICE_TYPE, dtype), (RDMA_PORT, port))
                for name, value in values.items():
                    spec = known.get(name)
                    if spec is not None:
                        out.append(Sample(spec, value, None, attrs))
        return out


SPEC = ProbeSpec(
    name="rdma",
    summary="RDMA resources in use per device and mlx5/erdma port counters (node scope)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NODE,
    overhead=Overhead.LOW,
    overhead_note="per collection: one RDMA netlink dump, and one sysfs read per counter file of every "
                  "port (about 50 per mlx5 port)",
    default_enabled=False,
    factory=RdmaProbe,
    instruments=INSTRUMENTS,
    requires=("/sys/class/infiniband (an RDMA device)", "RDMA netlink for resource counts"),
)
