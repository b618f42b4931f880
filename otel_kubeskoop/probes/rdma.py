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
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)

COUNTERS = {"mlx5": {s.key: s for s in I.RDMA_MLX5}, "erdma": {s.key: s for s in I.RDMA_ERDMA}}


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
            attrs = ((A.RDMA_DEVICE_NAME, dev.name), (A.RDMA_DEVICE_TYPE, ib.device_type(dev.name)))
            for spec in I.RDMA_RESOURCES:
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
                attrs = ((A.RDMA_DEVICE_NAME, device), (A.RDMA_DEVICE_TYPE, dtype), (A.RDMA_PORT, port))
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
    instruments=I.RDMA,
    requires=("/sys/class/infiniband (an RDMA device)", "RDMA netlink for resource counts"),
)
