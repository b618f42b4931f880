# SPDX-License-Identifier: Apache-2.0
"""The resource key: which resource a sample or an event goes to.

Probes key their values by network-namespace inode (``None`` for node scope) or, for pod-scope
probes, by pod UID. The directory turns that into one of three keys: the node (the host namespace
and node-scope data), a namespace other than the host's, or a pod whose processes have no
namespace of their own (a hostNetwork pod: its namespace is the node's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

#: Resources held at most (the directory's, the metric pipeline's): namespaces and pods on a node,
#: with room (Kubernetes' default is 110 pods a node).
MAX_RESOURCES = 4096


@dataclass(frozen=True, slots=True)
class NodeKey:
    """The node's resource: the host network namespace and node-scope data."""


@dataclass(frozen=True, slots=True)
class NetnsKey:
    """A network namespace other than the host's, by inode: a pod's, or one no pod is known for."""

    inode: int


@dataclass(frozen=True, slots=True)
class PodKey:
    """A pod, by UID, whose processes share a namespace that is not its own (hostNetwork)."""

    uid: str


NODE = NodeKey()

ResourceKey: TypeAlias = NodeKey | NetnsKey | PodKey
