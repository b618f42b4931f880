# SPDX-License-Identifier: Apache-2.0
"""tcpext: Linux TCP extension counters of each network namespace (/proc/<pid>/net/netstat, ``TcpExt:``).

Listen-queue drops, retransmission kinds, aborts, PAWS rejects and receive-queue drops: the 32 keys
upstream exports. Key meanings: https://www.kernel.org/doc/html/latest/networking/snmp_counter.html
"""

from __future__ import annotations

from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import NetnsProcfsProbe, counters
from otel_kubeskoop.procfs.net_snmp import read_net_netstat
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.topology.netns import Netns


class TcpextProbe(NetnsProcfsProbe):
    required = ("net/netstat",)

    def collect_netns(self, ns: Netns) -> list[Sample]:
        return counters(I.TCPEXT, read_net_netstat(ns).get("TcpExt", {}), ns.inode)


SPEC = ProbeSpec(
    name="tcpext",
    summary="TCP listen drops, retransmission kinds, aborts and queue drops per network namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="one read of /proc/<pid>/net/netstat per namespace per collection",
    default_enabled=True,
    factory=TcpextProbe,
    instruments=I.TCPEXT,
    requires=("/proc/<pid>/net/netstat",),
)
