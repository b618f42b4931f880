# SPDX-License-Identifier: Apache-2.0
"""The KubeSkoop-compatible Prometheus endpoint: upstream names and labels from the same samples.

One collection, two views: the cycle's samples go to the OTLP pipeline and are kept here for
``/metrics``. Series use the upstream names from the names table (``InstrumentSpec.compat``) and
upstream's labels ``k8s_node``, ``k8s_namespace``, ``k8s_pod`` (empty for the host namespace and
node-scope data) plus ``metrics.additionalLabels``; values are the kernel's raw values, summed over
attributes upstream does not have (interfaces except ``lo`` for netdev, CPUs for softnet), as
upstream does. Upstream exports these as gauges (the legacy collector); so do we, so that
dashboards and recording rules see the same types. Flow, packetloss and tcpretrans carry
upstream's tuple labels instead (:mod:`otel_kubeskoop.telemetry.compat_tuples`).

Namespaces that belong to no pod are left out, as upstream does (their series would collide with
the host's empty ``k8s_pod``), but counted: ``kubeskoop_agent_compat_unattributed_namespaces``.

Every sample carries the time of the collection that produced it (the text format's optional
timestamp). Upstream reads the kernel at each scrape; here a collection runs every interval and a
scrape serves its result, so without a timestamp a 2 s scrape of a 15 s collection stores the
same value seven times and then a jump: ``irate`` reads 0, then 7x the rate. With the timestamp
Prometheus stores each collection once, at the time it was read, so ``rate`` and ``irate`` are
right at any scrape interval, for a range of at least two collection intervals. The text is
rendered once per collection, here rather than by ``prometheus_client`` (a fifth of the CPU:
``bench/compat_scrape.py``), in its format; a scrape costs no more than sending it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from prometheus_client.utils import floatToGoString

from otel_kubeskoop.identity.keys import ResourceKey
from otel_kubeskoop.identity.labels import CompatLabels
from otel_kubeskoop.probe import Sample
from otel_kubeskoop.telemetry.compat_tuples import TupleSeries, is_tuple_metric
from otel_kubeskoop.topology.peers import Peer

STANDARD_LABELS = ("k8s_node", "k8s_namespace", "k8s_pod")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LabelSource(Protocol):
    """Where the endpoint gets a resource's entity labels and an address's pod or node (the
    resource directory)."""

    def compat_labels(self, key: ResourceKey) -> CompatLabels | None:
        """None for a namespace no pod is known for."""

    def peer(self, ip: str) -> Peer: ...


def format_value(value: float) -> str:
    """``floatToGoString(value)`` (Go's float formatting, as both exporters write values), with a
    shortcut for the integers most counters are: formatting is most of the rendering's cost."""
    if type(value) is int and 0 <= value < 10**15:
        digits = str(value)
        if len(digits) <= 6:
            return digits + ".0"
        mantissa = digits[1:].rstrip("0")
        return f"{digits[0]}{'.' if mantissa else ''}{mantissa}e+{len(digits) - 1:02d}"
    return floatToGoString(value)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    """``{a="1",b="2"}`` with the labels sorted by name, as ``prometheus_client`` writes them."""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in sorted(zip(names, values))) + "}"


class _Text:
    """The exposition text of one collection, family by family."""

    def __init__(self, stamp_ms: int) -> None:
        self._stamp = f" {stamp_ms}\n"
        self.parts: list[str] = []

    def family(self, name: str, doc: str, series: Iterable[tuple[str, float]]) -> None:
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        self.parts.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        self.parts += [f"{name}{labels} {format_value(value)}{self._stamp}" for labels, value in series]


class CompatEndpoint:
    """Holds the text of the last collection for ``/metrics``."""

    def __init__(self, node_name: str, additional_label_names: Sequence[str], labels: LabelSource, *,
                 max_tuple_series: int, clock: Callable[[], float] = time.time) -> None:
        self._node = node_name
        self._extra_names = tuple(additional_label_names)
        self._labels = labels
        self._clock = clock
        self._tuples = TupleSeries(node_name, max_tuple_series)
        self._text = b""
        self.overflow = 0  # tuples folded into an overflow series, summed over collections

    def update(self, groups: Mapping[ResourceKey, Iterable[Sample]]) -> None:
        """Render this collection, stamped with its time. ``groups`` are the cycle's samples by
        resource key."""
        text = _Text(int(self._clock() * 1000))
        groups = {key: list(samples) for key, samples in groups.items()}
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        docs: dict[str, str] = {}
        names = (*STANDARD_LABELS, *self._extra_names)
        unattributed = 0
        pods: set[ResourceKey] = set()
        for resource_key, samples in groups.items():
            entity = self._labels.compat_labels(resource_key)
            if entity is None:
                unattributed += 1
                continue
            if entity.pod:
                pods.add(resource_key)
            extra = dict(entity.extra)
            values = (self._node, entity.namespace, entity.pod, *(extra.get(n, "") for n in self._extra_names))
            plain = _labels(names, values)
            for s in samples:
                spec = s.instrument
                if spec.compat is None or any(kv in spec.compat_exclude for kv in s.attributes):
                    continue
                docs[spec.compat] = spec.description
                if not spec.compat_labels:
                    sums[spec.compat][plain] += s.value
                elif not is_tuple_metric(spec.compat_labels):  # attributes kept as labels (rdma)
                    attrs = dict(s.attributes)
                    own = [(label, str(attrs.get(a, ""))) for a, label in spec.compat_labels]
                    sums[spec.compat][_labels((*names, *(n for n, _ in own)), (*values, *(v for _, v in own)))] += s.value
        tuples, overflowed = self._tuples.collect(groups, pods, self._labels.peer)
        self.overflow += sum(overflowed.values())
        for name in sorted({*sums, *tuples}):
            if name in tuples:
                label_names, by_values, doc = tuples[name]
                text.family(name, doc, ((_labels(label_names, v), n) for v, n in by_values.items()))
            else:
                text.family(name, docs[name], sums[name].items())
        text.family("kubeskoop_agent_compat_tuple_overflow",
                    "Tuples added to the overflow series of a tuple metric because it had its maximum of series",
                    ((_labels(("k8s_node", "metric"), (self._node, name)), n) for name, n in sorted(overflowed.items())))
        text.family("kubeskoop_agent_compat_unattributed_namespaces",
                    "Network namespaces left off this endpoint because no pod owns them",
                    [(_labels(("k8s_node",), (self._node,)), unattributed)])
        self._text = "".join(text.parts).encode()

    def render(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE, self._text
