# SPDX-License-Identifier: Apache-2.0
"""softnet: per-CPU backlog processing and drops, node scope (/proc/net/softnet_stat).

The file shows the per-CPU ``softnet_data`` of the whole node whatever namespace reads it, so it is
reported once, on the node resource (upstream repeats the node's values on every pod).
"""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import host_source, require_file
from otel_kubeskoop.procfs.net_softnet import read_softnet_stat
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec

# /proc/net/softnet_stat: node scope, one series per CPU (the file is not per namespace).
_CPU = (A.CPU_LOGICAL_NUMBER,)
INSTRUMENTS = (
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


class SoftnetProbe:
    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.ctx = ctx

    def start(self) -> None:
        require_file(self.ctx, "net/softnet_stat")

    def stop(self) -> None:
        pass

    def collect(self) -> list[Sample]:
        out = []
        for row in read_softnet_stat(host_source(self.ctx)):
            attrs = ((A.CPU_LOGICAL_NUMBER, row.cpu),)
            for spec in INSTRUMENTS:
                out.append(Sample(spec, getattr(row, spec.key), None, attrs))
        return out


SPEC = ProbeSpec(
    name="softnet",
    summary="Packets processed and dropped by each CPU's network backlog (node scope)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NODE,
    overhead=Overhead.LOW,
    overhead_note="one read of /proc/net/softnet_stat per collection; series scale with CPUs",
    default_enabled=True,
    factory=SoftnetProbe,
    instruments=INSTRUMENTS,
    requires=("/proc/net/softnet_stat",),
)
