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
from otel_kubeskoop.vocabulary import instruments as I


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
            for spec in I.SOFTNET:
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
    instruments=I.SOFTNET,
    requires=("/proc/net/softnet_stat",),
)
