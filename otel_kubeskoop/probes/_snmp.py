# SPDX-License-Identifier: Apache-2.0
"""The ``tcp``, ``udp`` and ``ip`` probes: one section each of /proc/<pid>/net/snmp.

The three share one read of the file per namespace per cycle (:meth:`Cycle.snmp
<otel_kubeskoop.probe.Cycle.snmp>`; upstream shares it through a 2 s cache); each is its own probe
so that upstream configs listing them separately load unchanged.
"""

from __future__ import annotations

from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import NetnsProcfsProbe, counters
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec
from otel_kubeskoop.topology.netns import Netns


class SnmpSectionProbe(NetnsProcfsProbe):
    required = ("net/snmp",)
    section = ""
    instruments: tuple[InstrumentSpec, ...] = ()

    def collect_netns(self, ns: Netns) -> list[Sample]:
        snmp = self.ctx.cycle.snmp(ns)
        return counters(self.instruments, snmp.get(self.section, {}), ns.inode)


def snmp_spec(name: str, factory: type[SnmpSectionProbe], summary: str) -> ProbeSpec:
    return ProbeSpec(
        name=name,
        summary=summary,
        kinds=frozenset({Kind.METRICS}),
        source=Source.PROCFS,
        scope=Scope.NETNS,
        overhead=Overhead.LOW,
        overhead_note="one read of /proc/<pid>/net/snmp per namespace per collection, shared by tcp, udp and ip",
        default_enabled=True,
        factory=factory,
        instruments=factory.instruments,
        requires=("/proc/<pid>/net/snmp",),
    )
