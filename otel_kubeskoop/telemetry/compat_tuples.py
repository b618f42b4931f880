# SPDX-License-Identifier: Apache-2.0
"""Upstream's tuple labels for the compat endpoint: ``kubeskoop_flow_*``,
``kubeskoop_packetloss_*`` and ``kubeskoop_tcpretrans_total``.

Upstream labels these series with the packet's ends, not with a pod (``probe/legacy.go``
``TupleMetricsLabels`` in alibaba/kubeskoop): ``protocol`` (``TCP``, ``UDP``, ``ICMP``,
``ICMP6``, else ``IP``), ``src`` and ``dst`` with their ``_type`` (``pod``, ``node`` or
``unknown``), ``_node``, ``_namespace`` and ``_pod``, then ``sport`` and ``dport`` (``"0"`` without
ports); packetloss adds ``k8s_node``. Upstream knows an address only through its controller's IP
cache, and writes ``unknown`` without one; here the agent's pod cache names the pods and the node
of this node's addresses (:class:`~otel_kubeskoop.topology.peers.PeerDirectory`). Upstream leaves ``_node`` empty for a pod; here it is the
pod's node.

Flow is counted once per packet, as upstream's single host NIC sees it, although each pod
counts its own traffic: a packet counts where it left a pod, else where it entered one when its
source is no pod of this node, and on a host interface only when neither end is a pod of this
node.

The set of series is bounded: each metric keeps at most ``max_series`` tuples, in the order they
first appeared; the others add to one overflow series (``src`` and ``dst`` ``overflow``), and how
many tuples it holds is ``kubeskoop_agent_compat_tuple_overflow``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping

from otel_kubeskoop.probe import Sample
from otel_kubeskoop.topology.peers import UNKNOWN, Peer
from otel_kubeskoop.vocabulary import attributes as A

# Upstream's label order; the text lists labels sorted, as both exporters do.
TUPLE_LABELS = ("protocol", "src", "src_type", "src_node", "src_namespace", "src_pod",
                "dst", "dst_type", "dst_node", "dst_namespace", "dst_pod", "sport", "dport")
# Upstream's packetloss collector appends k8s_node to the tuple labels (probe/tracepacketloss).
WITH_NODE = frozenset({"kubeskoop_packetloss_total", "kubeskoop_packetloss_netfilter"})
# network.transport -> upstream's protocol word (bpfutil.GetProtoStr); anything else is "IP".
PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "ipv6-icmp": "ICMP6"}

# ip -> its (type, node, namespace, pod); UNKNOWN when it is no pod and no node the agent knows
# (topology.peers.PeerDirectory).
Peers = Callable[[str], Peer]
OVERFLOW: tuple[str, ...] = ("", "overflow", *UNKNOWN, "overflow", *UNKNOWN, "0", "0")


@functools.cache
def is_tuple_metric(compat_labels: tuple[tuple[str, str], ...]) -> bool:
    return any(label == "src" for _, label in compat_labels)


def _values(attrs: Mapping[str, object], peers: Peers) -> tuple[str, ...]:
    src, dst = str(attrs.get(A.SOURCE_ADDRESS, "")), str(attrs.get(A.DESTINATION_ADDRESS, ""))
    return (PROTOCOLS.get(str(attrs.get(A.NETWORK_TRANSPORT, "")), "IP"),
            src, *peers(src), dst, *peers(dst),
            str(attrs.get(A.SOURCE_PORT, 0)), str(attrs.get(A.DESTINATION_PORT, 0)))


def _counted_here(attrs: Mapping[str, object], on_host: bool, peers: Peers) -> bool:
    """Whether a flow sample is where its packets count once (see the module docstring)."""
    src_is_pod = peers(str(attrs.get(A.SOURCE_ADDRESS, "")))[0] == "pod"
    if on_host:
        return not src_is_pod and peers(str(attrs.get(A.DESTINATION_ADDRESS, "")))[0] != "pod"
    return attrs.get(A.NETWORK_IO_DIRECTION) == "transmit" or not src_is_pod


class TupleSeries:
    """The tuple metrics of each collection, with the series they have kept between collections."""

    def __init__(self, node_name: str, max_series: int) -> None:
        self._node = node_name
        self._max = max_series
        self._kept: dict[str, dict[tuple[str, ...], None]] = {}  # name -> tuples with series, in order

    def collect(self, groups: Mapping[Hashable, Iterable[Sample]], host_key: Hashable,
                peers: Peers) -> tuple[dict[str, dict[tuple[str, ...], float]], dict[str, int]]:
        """(name -> label values in TUPLE_LABELS order (+ k8s_node) -> value, name -> tuples in
        the overflow series) of this collection's tuple samples in ``groups`` (by resource key;
        ``host_key`` is the host namespace's)."""
        sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        for key, samples in groups.items():
            for s in samples:
                spec = s.instrument
                if spec.compat is None or not is_tuple_metric(spec.compat_labels):
                    continue
                attrs = dict(s.attributes)
                if A.NETWORK_IO_DIRECTION in attrs and not _counted_here(attrs, key == host_key, peers):
                    continue
                values = OVERFLOW if attrs.get(A.FLOW_OVERFLOW) else _values(attrs, peers)
                sums[spec.compat][values] += s.value
        out: dict[str, dict[tuple[str, ...], float]] = {}
        overflowed: dict[str, int] = {}
        for name, tuples in sums.items():
            out[name], overflowed[name] = self._bound(name, tuples)
            if name in WITH_NODE:
                out[name] = {(*values, self._node): v for values, v in out[name].items()}
        self._kept = {name: kept for name, kept in self._kept.items() if name in sums}
        return out, overflowed

    def _bound(self, name: str, tuples: dict[tuple[str, ...], float]) -> tuple[dict[tuple[str, ...], float], int]:
        kept = {t: None for t in self._kept.get(name, ()) if t in tuples}
        for t in sorted(tuples):
            if len(kept) >= self._max:
                break
            if t != OVERFLOW:
                kept.setdefault(t)
        self._kept[name] = kept
        out = {t: tuples[t] for t in kept}
        rest = [t for t in tuples if t not in kept]
        if rest:
            out[OVERFLOW] = sum(tuples[t] for t in rest)
        return out, len([t for t in rest if t != OVERFLOW])
