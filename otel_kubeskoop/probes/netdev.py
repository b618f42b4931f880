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
from otel_kubeskoop.vocabulary.instruments import C, NO_LOOPBACK, InstrumentSpec
from otel_kubeskoop.topology.netns import Netns

# /proc/<pid>/net/dev, per interface. The key is the NetDevStats field.
_IF = (A.NETWORK_INTERFACE_NAME,)
NETDEV = tuple(
    InstrumentSpec(
        name=f"kubeskoop.netdev.{word}", kind=C, unit=unit, description=desc, attributes=_IF,
        key=key, compat=f"kubeskoop_netdev_{word}", compat_exclude=NO_LOOPBACK,
    )
    for word, key, unit, desc in [
        ("rxbytes", "rx_bytes", "By", "Bytes received by the interface"),
        ("rxpackets", "rx_packets", "{packet}", "Packets received by the interface"),
        ("rxerrors", "rx_errs", "{error}", "Receive errors on the interface"),
        ("rxdropped", "rx_drop", "{packet}", "Received packets dropped by the interface"),
        ("txbytes", "tx_bytes", "By", "Bytes transmitted by the interface"),
        ("txpackets", "tx_packets", "{packet}", "Packets transmitted by the interface"),
        ("txerrors", "tx_errs", "{error}", "Transmit errors on the interface"),
        ("txdropped", "tx_drop", "{packet}", "Transmit packets dropped by the interface"),
    ]
)
_IO = (A.NETWORK_INTERFACE_NAME, A.NETWORK_IO_DIRECTION)
# Semconv names (k8s metrics, development): pod namespaces use k8s.pod.*, the host k8s.node.*.
K8S_POD_NETWORK_IO = InstrumentSpec("k8s.pod.network.io", C, "By", "Network bytes for the Pod", _IO)
K8S_POD_NETWORK_ERRORS = InstrumentSpec("k8s.pod.network.errors", C, "{error}", "Pod network errors", _IO)
K8S_NODE_NETWORK_IO = InstrumentSpec("k8s.node.network.io", C, "By", "Network bytes for the Node", _IO)
K8S_NODE_NETWORK_ERRORS = InstrumentSpec("k8s.node.network.errors", C, "{error}", "Node network errors", _IO)
NETDEV_STANDARD = (K8S_POD_NETWORK_IO, K8S_POD_NETWORK_ERRORS, K8S_NODE_NETWORK_IO, K8S_NODE_NETWORK_ERRORS)
INSTRUMENTS = NETDEV + NETDEV_STANDARD


_STANDARD = {
    # (is host): (io, errors)
    False: (K8S_POD_NETWORK_IO, K8S_POD_NETWORK_ERRORS),
    True: (K8S_NODE_NETWORK_IO, K8S_NODE_NETWORK_ERRORS),
}


class NetdevProbe(NetnsProcfsProbe):
    required = ("net/dev",)

    def collect_netns(self, ns: Netns) -> list[Sample]:
        out: list[Sample] = []
        io, errors = _STANDARD[ns.is_host]
        for ifname, st in read_net_dev(ns).items():
            attrs = ((A.NETWORK_INTERFACE_NAME, ifname),)
            for spec in NETDEV:
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
    instruments=INSTRUMENTS,
    requires=("/proc/<pid>/net/dev",),
)
