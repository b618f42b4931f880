# SPDX-License-Identifier: Apache-2.0
"""netdev: per-interface traffic counters of each network namespace, from /proc/<pid>/net/dev.

Besides the upstream words (``kubeskoop.netdev.rxbytes``...) per interface, it emits the semconv
``k8s.pod.network.io`` / ``k8s.pod.network.errors`` for pod namespaces and ``k8s.node.network.*``
for the host namespace, both without ``lo``.
"""

from __future__ import annotations

from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import NetnsProcfsProbe
from otel_kubeskoop.procfs.net_dev import read_net_dev
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.topology.netns import Netns

_STANDARD = {
    # (is host): (io, errors)
    False: (I.K8S_POD_NETWORK_IO, I.K8S_POD_NETWORK_ERRORS),
    True: (I.K8S_NODE_NETWORK_IO, I.K8S_NODE_NETWORK_ERRORS),
}


class NetdevProbe(NetnsProcfsProbe):
    required = ("net/dev",)

    def collect_netns(self, ns: Netns) -> list[Sample]:
        out: list[Sample] = []
        io, errors = _STANDARD[ns.is_host]
        for ifname, st in read_net_dev(ns).items():
            attrs = ((A.NETWORK_INTERFACE_NAME, ifname),)
            for spec in I.NETDEV:
                out.append(Sample(spec, getattr(st, spec.key), ns.inode, attrs))
            if ifname == "lo":
                continue
            rx = ((A.NETWORK_INTERFACE_NAME, ifname), (A.NETWORK_IO_DIRECTION, "receive"))
            tx = ((A.NETWORK_INTERFACE_NAME, ifname), (A.NETWORK_IO_DIRECTION, "transmit"))
            out += [
                Sample(io, st.rx_bytes, ns.inode, rx),
                Sample(io, st.tx_bytes, ns.inode, tx),
                Sample(errors, st.rx_errs, ns.inode, rx),
                Sample(errors, st.tx_errs, ns.inode, tx),
            ]
        return out


SPEC = ProbeSpec(
    name="netdev",
    summary="Bytes, packets, errors and drops per interface of each network namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="one read of /proc/<pid>/net/dev per namespace per collection",
    default_enabled=True,
    factory=NetdevProbe,
    instruments=I.NETDEV + I.NETDEV_STANDARD,
    requires=("/proc/<pid>/net/dev",),
)
