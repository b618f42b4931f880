# SPDX-License-Identifier: Apache-2.0
"""OTel resources: the node, a network namespace, and a pod.

Built with ``Resource(attrs)``, never ``Resource.create()``, which would run detectors and merge the
agent's own ``service.*`` and ``OTEL_RESOURCE_ATTRIBUTES`` into every namespace. Every resource
carries ``service.name`` and a unique ``service.instance.id`` so that Prometheus and Mimir
(``job``/``instance``) and Loki can tell them apart; two resources are never identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.topology.podinfo import PodInfo
from otel_kubeskoop.vocabulary import attributes as A

# Owner kinds that have a semconv k8s.<kind>.name / .uid attribute.
_WORKLOAD_KINDS = {"Deployment": "deployment", "ReplicaSet": "replicaset", "StatefulSet": "statefulset",
                   "DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob"}
# Top workloads whose name is a pod's service.name.
_SERVICE_NAME_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "CronJob", "Job")

AGENT_SERVICE_NAME = "otel-kubeskoop"
ANNOTATION_PREFIX = "resource.opentelemetry.io/"


@dataclass(frozen=True, slots=True)
class Identity:
    """Cluster-wide facts every resource carries."""

    node_name: str
    host_name: str
    cluster_name: str | None = None

    def base(self) -> dict[str, str | int]:
        attrs: dict[str, str | int] = {A.HOST_NAME: self.host_name, A.K8S_NODE_NAME: self.node_name}
        if self.cluster_name:
            attrs[A.K8S_CLUSTER_NAME] = self.cluster_name
        return attrs


def node_resource(identity: Identity, host_inode: int | None) -> Resource:
    attrs = identity.base()
    attrs[A.SERVICE_NAME] = AGENT_SERVICE_NAME
    attrs[A.SERVICE_NAMESPACE] = identity.cluster_name or "kubeskoop"
    attrs[A.SERVICE_INSTANCE_ID] = identity.node_name
    attrs[A.SERVICE_VERSION] = __version__
    if host_inode is not None:
        attrs[A.NETNS_INODE] = host_inode
    return Resource(attrs)


def netns_resource(identity: Identity, inode: int, name: str | None, pod_uid: str | None = None) -> Resource:
    """A network namespace with no known pod. ``pod_uid`` is set when its processes' cgroup names a
    pod the Kubernetes API has not described (no API access, or not yet synced)."""
    attrs = identity.base()
    attrs[A.NETNS_INODE] = inode
    if name:
        attrs[A.NETNS_NAME] = name
    if pod_uid:
        attrs[A.K8S_POD_UID] = pod_uid
    attrs[A.SERVICE_NAME] = f"netns/{name}" if name else "netns"
    attrs[A.SERVICE_NAMESPACE] = identity.node_name
    attrs[A.SERVICE_INSTANCE_ID] = f"{identity.node_name}.netns-{inode}"
    return Resource(attrs)


def pod_uid_resource(identity: Identity, pod_uid: str) -> Resource:
    """A pod known only by the UID its cgroup names (no API metadata), with no namespace of its own."""
    attrs = identity.base()
    attrs[A.K8S_POD_UID] = pod_uid
    attrs[A.SERVICE_NAME] = "pod"
    attrs[A.SERVICE_NAMESPACE] = identity.node_name
    attrs[A.SERVICE_INSTANCE_ID] = f"{identity.node_name}.pod-{pod_uid}"
    return Resource(attrs)


def pod_resource(identity: Identity, inode: int | None, pod: PodInfo, extra: Mapping[str, str]) -> Resource:
    """A pod: identity, owner workload, ``service.*`` by the semconv k8s rules, and
    ``metrics.additionalLabels`` rendered for this pod (never overriding the others)."""
    attrs = identity.base()
    attrs[A.K8S_NAMESPACE_NAME] = pod.namespace
    attrs[A.K8S_POD_NAME] = pod.name
    attrs[A.K8S_POD_UID] = pod.uid
    if pod.start_time:
        attrs[A.K8S_POD_START_TIME] = pod.start_time
    if pod.pod_ip and not pod.host_network:  # a hostNetwork pod's IP is the node's: ambiguous
        attrs[A.K8S_POD_IP] = pod.pod_ip
    for kind, name, uid in ((pod.owner_kind, pod.owner_name, pod.owner_uid),
                            (pod.workload_kind, pod.workload_name, pod.workload_uid)):
        key = _WORKLOAD_KINDS.get(kind or "")
        if key and name:
            attrs[f"k8s.{key}.name"] = name
            if uid:
                attrs[f"k8s.{key}.uid"] = uid
    if inode is not None:
        attrs[A.NETNS_INODE] = inode
    attrs.update(service_attributes(pod))
    for key, value in extra.items():
        attrs.setdefault(key, value)
    return Resource(attrs)


def service_attributes(pod: PodInfo, *, use_labels: bool = False) -> dict[str, str]:
    """``service.namespace``, ``service.name``, ``service.instance.id`` for a pod-level resource.

    Follows semantic conventions ``docs/non-normative/k8s-attributes.md``
    (https://github.com/open-telemetry/semantic-conventions/blob/main/docs/non-normative/k8s-attributes.md),
    first value found:

    - ``service.namespace``: annotation ``resource.opentelemetry.io/service.namespace``, else the
      Kubernetes namespace;
    - ``service.name``: annotation ``resource.opentelemetry.io/service.name``; then, only with
      ``use_labels`` (the conventions ask for well-known labels to be opt-in), labels
      ``app.kubernetes.io/instance`` and ``app.kubernetes.io/name``; then the name of the top
      workload if it is a Deployment, ReplicaSet, StatefulSet, DaemonSet, CronJob or Job; then the
      pod name (there is no container at pod level);
    - ``service.instance.id``: annotation ``resource.opentelemetry.io/service.instance.id``, else
      ``<namespace>.<pod name>``.

    Empty annotation or label values count as absent.
    """
    ann, labels = pod.annotations, pod.labels
    namespace = ann.get(ANNOTATION_PREFIX + "service.namespace") or pod.namespace
    name = ann.get(ANNOTATION_PREFIX + "service.name")
    if not name and use_labels:
        name = labels.get("app.kubernetes.io/instance") or labels.get("app.kubernetes.io/name")
    if not name and pod.workload_kind in _SERVICE_NAME_KINDS and pod.workload_name:
        name = pod.workload_name
    if not name:
        name = pod.name
    instance = ann.get(ANNOTATION_PREFIX + "service.instance.id") or f"{pod.namespace}.{pod.name}"
    return {A.SERVICE_NAMESPACE: namespace, A.SERVICE_NAME: name, A.SERVICE_INSTANCE_ID: instance}
