# SPDX-License-Identifier: Apache-2.0
"""OTel resources: the node, and one per network namespace.

Built with ``Resource(attrs)``, never ``Resource.create()``, which would run detectors and merge the
agent's own ``service.*`` and ``OTEL_RESOURCE_ATTRIBUTES`` into every namespace
(``reference/otel-python.md`` section 8). Every resource carries ``service.name`` and a unique
``service.instance.id`` so that Prometheus and Mimir (``job``/``instance``) and Loki can tell them
apart; two resources are never identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.topology.pods import PodInfo, service_attributes

# Owner kinds that have a semconv k8s.<kind>.name / .uid attribute.
_WORKLOAD_KINDS = {"Deployment": "deployment", "ReplicaSet": "replicaset", "StatefulSet": "statefulset",
                   "DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob"}

AGENT_SERVICE_NAME = "otel-kubeskoop"


@dataclass(frozen=True, slots=True)
class Identity:
    """Cluster-wide facts every resource carries."""

    node_name: str
    host_name: str
    cluster_name: str | None = None

    def base(self) -> dict[str, str]:
        attrs = {A.HOST_NAME: self.host_name, A.K8S_NODE_NAME: self.node_name}
        if self.cluster_name:
            attrs[A.K8S_CLUSTER_NAME] = self.cluster_name
        return attrs


def node_resource(identity: Identity, host_inode: int | None) -> Resource:
    attrs: dict[str, str | int] = identity.base()
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
    attrs: dict[str, str | int] = identity.base()
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
    attrs: dict[str, str | int] = identity.base()
    attrs[A.K8S_POD_UID] = pod_uid
    attrs[A.SERVICE_NAME] = "pod"
    attrs[A.SERVICE_NAMESPACE] = identity.node_name
    attrs[A.SERVICE_INSTANCE_ID] = f"{identity.node_name}.pod-{pod_uid}"
    return Resource(attrs)


def pod_resource(identity: Identity, inode: int | None, pod: PodInfo, extra: dict[str, str]) -> Resource:
    """A pod (DESIGN section 4): identity, owner workload, ``service.*`` by the semconv k8s rules,
    and ``metrics.additionalLabels`` rendered for this pod (never overriding the others)."""
    attrs: dict[str, str | int] = identity.base()
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
