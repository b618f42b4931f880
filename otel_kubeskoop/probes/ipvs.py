# SPDX-License-Identifier: Apache-2.0
"""ipvs: IPVS totals of the host network namespace (/proc/net/ip_vs_stats), node scope.

Only kernels with IPVS (``CONFIG_IP_VS``, module ``ip_vs``, loaded by kube-proxy in IPVS mode)
have the file; elsewhere the probe reports itself unavailable.
"""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import host_source, require_file
from otel_kubeskoop.procfs.net_ipvs import read_ip_vs_stats
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec

# /proc/net/ip_vs_stats totals (host netns).
INSTRUMENTS = tuple(
    InstrumentSpec(f"kubeskoop.ipvs.{word}", C, unit, desc, key=key, compat=f"kubeskoop_ipvs_{word}")
    for word, key, unit, desc in [
        ("connections", "connections", "{connection}", "IPVS connections scheduled"),
        ("incomingpackets", "incoming_packets", "{packet}", "Packets into IPVS virtual services"),
        ("incomingbytes", "incoming_bytes", "By", "Bytes into IPVS virtual services"),
        ("outgoingpackets", "outgoing_packets", "{packet}", "Packets out of IPVS virtual services"),
        ("outgoingbytes", "outgoing_bytes", "By", "Bytes out of IPVS virtual services"),
    ]
)


class IpvsProbe:
    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.ctx = ctx

    def start(self) -> None:
        require_file(self.ctx, "net/ip_vs_stats", "the kernel has no IPVS loaded (CONFIG_IP_VS / module ip_vs)")

    def stop(self) -> None:
        pass

    def collect(self) -> list[Sample]:
        stats = read_ip_vs_stats(host_source(self.ctx))
        return [Sample(spec, getattr(stats, spec.key), None) for spec in INSTRUMENTS]


SPEC = ProbeSpec(
    name="ipvs",
    summary="IPVS connections, packets and bytes of the host (kube-proxy IPVS mode)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NODE,
    overhead=Overhead.LOW,
    overhead_note="one read of /proc/net/ip_vs_stats per collection",
    default_enabled=False,
    factory=IpvsProbe,
    instruments=INSTRUMENTS,
    requires=("/proc/net/ip_vs_stats (kernel IPVS)",),
)
