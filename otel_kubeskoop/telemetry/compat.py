# SPDX-License-Identifier: Apache-2.0
"""The KubeSkoop-compatible Prometheus endpoint: upstream names and labels from the same samples.

One collection, two views: the cycle's samples go to the OTLP pipeline and are kept here for
``/metrics``. Series use the upstream names from the names table (``InstrumentSpec.compat``) and
upstream's labels ``k8s_node``, ``k8s_namespace``, ``k8s_pod`` (empty for the host namespace and
node-scope data) plus ``metrics.additionalLabels``; values are the kernel's raw values, summed over
attributes upstream does not have (interfaces except ``lo`` for netdev, CPUs for softnet), as
upstream does. Upstream exports these as gauges (the legacy collector); so do we, so that
dashboards and recording rules see the same types. The entity labels of each resource come from
the resource directory the endpoint is built with.

Namespaces that belong to no pod are left out, as upstream does (their series would collide with
the host's empty ``k8s_pod``), but counted: ``kubeskoop_agent_compat_unattributed_namespaces``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.exposition import generate_latest

from otel_kubeskoop.identity.keys import ResourceKey
from otel_kubeskoop.identity.labels import CompatLabels
from otel_kubeskoop.probe import Sample

STANDARD_LABELS = ("k8s_node", "k8s_namespace", "k8s_pod")


class LabelSource(Protocol):
    """Where the endpoint gets a resource's entity labels (the resource directory): None for a
    namespace no pod is known for."""

    def compat_labels(self, key: ResourceKey) -> CompatLabels | None: ...


class CompatCollector(Collector):
    def __init__(self, node_name: str, additional_label_names: Sequence[str], labels: LabelSource) -> None:
        self._node = node_name
        self._extra_names = tuple(additional_label_names)
        self._labels = labels
        self._lock = threading.Lock()
        self._families: list[Metric] = []

    def update(self, groups: Mapping[ResourceKey, Iterable[Sample]]) -> None:
        """Build this cycle's families now (on the agent thread), so scrapes only serialize.
        ``groups`` are the cycle's samples by resource key."""
        sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        docs: dict[str, tuple[str, tuple[str, ...]]] = {}
        unattributed = 0
        for resource_key, samples in groups.items():
            entity = self._labels.compat_labels(resource_key)
            if entity is None:
                unattributed += 1
                continue
            extra = dict(entity.extra)
            key = (self._node, entity.namespace, entity.pod, *(extra.get(n, "") for n in self._extra_names))
            for s in samples:
                spec = s.instrument
                if spec.compat is None or any(kv in spec.compat_exclude for kv in s.attributes):
                    continue
                series = key
                if spec.compat_labels:  # attributes upstream keeps as labels (rdma device, type, port)
                    attrs = dict(s.attributes)
                    series = key + tuple(str(attrs.get(a, "")) for a, _ in spec.compat_labels)
                sums[spec.compat][series] += s.value
                docs[spec.compat] = (spec.description, tuple(label for _, label in spec.compat_labels))
        families: list[Metric] = []
        names = (*STANDARD_LABELS, *self._extra_names)
        for name in sorted(sums):
            doc, own = docs[name]
            fam = GaugeMetricFamily(name, doc, labels=[*names, *own])
            for key, value in sums[name].items():
                fam.add_metric(list(key), value)
            families.append(fam)
        fam = GaugeMetricFamily("kubeskoop_agent_compat_unattributed_namespaces",
                                "Network namespaces left off this endpoint because no pod owns them",
                                labels=["k8s_node"])
        fam.add_metric([self._node], unattributed)
        families.append(fam)
        with self._lock:
            self._families = families

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = self._families
        yield from families


class CompatEndpoint:
    """A private registry holding only the compat collector (no process or platform metrics)."""

    def __init__(self, node_name: str, additional_label_names: Sequence[str], labels: LabelSource) -> None:
        self.collector = CompatCollector(node_name, additional_label_names, labels)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def update(self, groups: Mapping[ResourceKey, Iterable[Sample]]) -> None:
        self.collector.update(groups)

    def render(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
