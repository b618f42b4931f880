# SPDX-License-Identifier: Apache-2.0
"""Upstream's tuple labels for the compat endpoint: the flow, packetloss and tcpretrans metrics.

Upstream labels these series with the packet's ends, not with a pod (``probe/legacy.go``
``TupleMetricsLabels`` in alibaba/kubeskoop): ``protocol`` (``TCP``, ``UDP``, ``ICMP``,
``ICMP6``, else ``IP``), ``src`` and ``dst`` with their ``_type`` (``pod``, ``node`` or
``unknown``), ``_node``, ``_namespace`` and ``_pod``, then ``sport`` and ``dport`` (``"0"`` without
ports); packetloss adds ``k8s_node``. An instrument asks for them with its ``compat_labels``
(``vocabulary.instruments.TUPLE_COMPAT``, plus ``k8s_node`` where upstream has it). Upstream knows
an address only through its controller's IP cache, and writes ``unknown`` without one; here the
agent's pod cache names the pods and the node of this node's addresses
(:class:`~otel_kubeskoop.topology.peers.PeerDirectory`). Upstream leaves ``_node`` empty for a
pod; here it is the pod's node.

Flow is counted once per packet, as upstream's single host NIC sees it, although each pod
counts its own traffic: a packet counts where it left a pod, else where it entered one when its
source is no pod of this node, and elsewhere (the host's interfaces, a namespace no pod owns) only
when neither end is a pod of this node.

The set of series is bounded: each metric keeps at most ``max_series`` tuples, in the order they
first appeared; the others add to one overflow series (``src`` and ``dst`` ``overflow``), and how
many tuples it holds is ``kubeskoop_agent_compat_tuple_overflow``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Container, Hashable, Iterable, Mapping

from otel_kubeskoop.probe import Sample
from otel_kubeskoop.topology.peers import UNKNOWN, Peer
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

ENDS = ("src", "dst")  # an address label, followed by its peer's four labels
PEER_SUFFIXES = ("_type", "_node", "_namespace", "_pod")
NODE_LABEL = "k8s_node"  # not an attribute: this node's name
# network.transport -> upstream's protocol word (bpfutil.GetProtoStr); anything else is "IP".
PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "ipv6-icmp": "ICMP6"}

# ip -> its (type, node, namespace, pod); UNKNOWN when it is no pod and no node the agent knows
# (topology.peers.PeerDirectory).
Peers = Callable[[str], Peer]


@functools.cache
def is_tuple_metric(compat_labels: tuple[tuple[str, str], ...]) -> bool:
    return any(label == "src" for _, label in compat_labels)


@functools.cache
def label_names(compat_labels: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The labels of a tuple metric: its compat labels, each address followed by its peer's."""
    out: list[str] = []
    for _, label in compat_labels:
        out.append(label)
        if label in ENDS:
            out += [label + suffix for suffix in PEER_SUFFIXES]
    return tuple(out)


def _values(compat_labels: tuple[tuple[str, str], ...], attrs: Mapping[str, object], peers: Peers,
            node: str) -> tuple[str, ...]:
    out: list[str] = []
    for attribute, label in compat_labels:
        value = str(attrs.get(attribute, ""))
        if label in ENDS:
            out += [value, *peers(value)]
        elif label == "protocol":
            out.append(PROTOCOLS.get(value, "IP"))
        elif label == NODE_LABEL:
            out.append(node)
        else:  # a port: "0" without ports, as upstream writes it
            out.append(value or "0")
    return tuple(out)


@functools.cache
def _overflow(compat_labels: tuple[tuple[str, str], ...], node: str) -> tuple[str, ...]:
    """The overflow series' labels: ``overflow`` addresses, an empty protocol, ports "0"."""
    out: list[str] = []
    for _, label in compat_labels:
        if label in ENDS:
            out += ["overflow", *UNKNOWN]
        else:
            out.append(node if label == NODE_LABEL else "" if label == "protocol" else "0")
    return tuple(out)


def _counted_here(attrs: Mapping[str, object], in_pod: bool, peers: Peers) -> bool:
    """Whether a flow sample is where its packets count once (see the module docstring)."""
    src_is_pod = peers(str(attrs.get(A.SOURCE_ADDRESS, "")))[0] == "pod"
    if not in_pod:
        return not src_is_pod and peers(str(attrs.get(A.DESTINATION_ADDRESS, "")))[0] != "pod"
    return attrs.get(A.NETWORK_IO_DIRECTION) == "transmit" or not src_is_pod


class TupleSeries:
    """The tuple metrics of each collection, with the series they have kept between collections."""

    def __init__(self, node_name: str, max_series: int) -> None:
        self._node = node_name
        self._max = max_series
        self._kept: dict[str, dict[tuple[str, ...], None]] = {}  # name -> tuples with series, in order

    def collect(self, groups: Mapping[Hashable, Iterable[Sample]], pods: Container[Hashable], peers: Peers
                ) -> tuple[dict[str, tuple[tuple[str, ...], dict[tuple[str, ...], float], str]], dict[str, int]]:
        """(name -> (label names, label values -> value, description), name -> tuples in the
        overflow series)
        of this collection's tuple samples in ``groups`` (by resource key; ``pods``: the keys
        of pods' namespaces)."""
        sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        specs: dict[str, InstrumentSpec] = {}
        for key, samples in groups.items():
            for s in samples:
                spec = s.instrument
                if spec.compat is None or not is_tuple_metric(spec.compat_labels):
                    continue
                attrs = dict(s.attributes)
                if A.NETWORK_IO_DIRECTION in attrs and not _counted_here(attrs, key in pods, peers):
                    continue
                specs[spec.compat] = spec
                # A series without addresses holds a probe's own overflow (flow's maxSeries).
                values = (_values(spec.compat_labels, attrs, peers, self._node) if A.SOURCE_ADDRESS in attrs
                          else _overflow(spec.compat_labels, self._node))
                sums[spec.compat][values] += s.value
        out: dict[str, tuple[tuple[str, ...], dict[tuple[str, ...], float], str]] = {}
        overflowed: dict[str, int] = {}
        for name, tuples in sums.items():
            spec = specs[name]
            series, overflowed[name] = self._bound(name, tuples, _overflow(spec.compat_labels, self._node))
            out[name] = (label_names(spec.compat_labels), series, spec.description)
        self._kept = {name: kept for name, kept in self._kept.items() if name in sums}
        return out, overflowed

    def _bound(self, name: str, tuples: dict[tuple[str, ...], float], overflow: tuple[str, ...]
               ) -> tuple[dict[tuple[str, ...], float], int]:
        kept = {t: None for t in self._kept.get(name, ()) if t in tuples}
        for t in sorted(tuples):
            if len(kept) >= self._max:
                break
            if t != overflow:
                kept.setdefault(t)
        self._kept[name] = kept
        out = {t: tuples[t] for t in kept}
        rest = [t for t in tuples if t not in kept]
        if rest:
            out[overflow] = sum(tuples[t] for t in rest)
        return out, len([t for t in rest if t != overflow])
