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
from otel_kubeskoop.telemetry import attributes as A

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


def netns_resource(identity: Identity, inode: int, name: str | None) -> Resource:
    """A network namespace that no pod claims (or before pod attribution exists)."""
    attrs: dict[str, str | int] = identity.base()
    attrs[A.NETNS_INODE] = inode
    if name:
        attrs[A.NETNS_NAME] = name
    attrs[A.SERVICE_NAME] = f"netns/{name}" if name else "netns"
    attrs[A.SERVICE_NAMESPACE] = identity.node_name
    attrs[A.SERVICE_INSTANCE_ID] = f"{identity.node_name}.netns-{inode}"
    return Resource(attrs)
