# SPDX-License-Identifier: Apache-2.0
"""The resource directory: namespace and pod -> resource key -> OTel resource and compat labels.

The agent refreshes it once per cycle with the namespace snapshot; the metric pipeline, the event
emitter and the compat endpoint ask it for resources and labels. A resource is built on first use
and kept until what it was built from changes: the namespace's owner, the pod's metadata
(``resourceVersion``), the namespace's name, or the host's namespace. A namespace whose resource
attributes changed (its pod's metadata arrived, changed or went away) gets a new resource object;
the metric pipeline sees the new object and re-attributes the series (the old resource is
exported once more). A rebuilt resource with the same attributes keeps its object, so nothing is
re-attributed for a change that does not show.

Bounded: a namespace's resource is forgotten when the namespace is not in a cycle's snapshot (an
event may name a namespace the scan never saw, one that came and went between two scans), and
at most ``max_resources`` are held; a lookup past that builds a resource it does not keep, and is
counted in :attr:`ResourceDirectory.overflow`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.identity.keys import MAX_RESOURCES, NODE, NetnsKey, NodeKey, PodKey, ResourceKey
from otel_kubeskoop.identity.labels import CompatLabels, render_additional_labels
from otel_kubeskoop.identity.resources import Identity, netns_resource, node_resource, pod_resource, pod_uid_resource
from otel_kubeskoop.probe import Cycle, Sample
from otel_kubeskoop.topology.attribution import NOBODY, Attributor, Owner
from otel_kubeskoop.topology.peers import Peer, PeerDirectory
from otel_kubeskoop.topology.podinfo import PodInfo


@dataclass(frozen=True, slots=True)
class _Entry:
    signature: tuple[Any, ...]  # what the resource was built from
    resource: Resource
    labels: Mapping[str, str]  # metrics.additionalLabels rendered for it


class ResourceDirectory:
    """Owns namespace ownership, the resource cache and the labels rendered for each resource."""

    def __init__(self, identity: Identity, attributor: Attributor,
                 additional_labels: Sequence[tuple[str, str]] = (), max_resources: int = MAX_RESOURCES) -> None:
        self.identity = identity
        self.max_resources = max_resources
        self.overflow = 0  # lookups whose resource was built but not kept: the cap was full
        self.attributor = attributor
        self._templates = tuple(additional_labels)
        self._cycle = Cycle()
        self._host_inode: int | None = None
        self._owners: dict[int, Owner] = {}
        self._keys: dict[int, NetnsKey] = {}  # this cycle's namespaces' keys, made once (events look them up)
        self._pod_inodes: dict[str, int] = {}  # pod uid -> the namespace it owns
        self._entries: dict[ResourceKey, _Entry] = {}
        self._peers = PeerDirectory(identity.node_name)  # ip -> pod or node, the compat tuple labels

    def __len__(self) -> int:
        """Resources held."""
        return len(self._entries)

    @property
    def owners(self) -> Mapping[int, Owner]:
        """Every namespace's owner, as of the last refresh."""
        return self._owners

    def owner(self, inode: int) -> Owner:
        return self._owners.get(inode, NOBODY)

    # The cycle (agent thread) ------------------------------------------------------------------

    def refresh(self, cycle: Cycle) -> None:
        """Take this cycle's namespaces: forget the others, resolve every namespace's owner, and
        rebuild each held resource whose sources changed."""
        host = cycle.host.inode if cycle.host is not None else None
        if host is not None and host != self._host_inode:
            self._host_inode = host
            self._entries.pop(NODE, None)
        self._cycle = cycle
        self._keys = {inode: NetnsKey(inode) for inode in cycle.namespaces if inode != self._host_inode}
        # list() copies in one step: the event pump thread may add an entry meanwhile
        for key in [k for k in list(self._entries) if isinstance(k, NetnsKey) and k.inode not in self._keys]:
            self._entries.pop(key, None)
        self._owners = self.attributor.resolve(cycle.namespaces)
        self._pod_inodes = {owner.pod_uid: inode for inode, owner in self._owners.items()
                            if owner.pod_uid and not owner.host}
        self._peers.refresh(self.attributor.pods.pods().values() if self.attributor.pods else (), cycle.host)
        for key, entry in list(self._entries.items()):
            if self._signature(key) == entry.signature:
                continue
            fresh = self._build(key)
            if fresh.resource.attributes == entry.resource.attributes:
                fresh = _Entry(fresh.signature, entry.resource, fresh.labels)
            self._entries[key] = fresh

    def key(self, inode: int | None) -> ResourceKey:
        """The key of a namespace's data (``None``: node scope)."""
        if inode is None or inode == self._host_inode:
            return NODE
        return self._keys.get(inode) or NetnsKey(inode)

    def route(self, samples: Iterable[Sample]) -> tuple[dict[ResourceKey, list[Sample]], list[ResourceKey]]:
        """This cycle's samples grouped by resource key, and the keys alive this cycle.

        A pod-scope sample (``pod_uid``) goes to its pod's namespace when the pod has one, else to
        a resource of the pod alone (a hostNetwork pod shares the node's namespace, but its
        processes are its own); a pod key with no samples this cycle is forgotten.
        """
        by_netns: defaultdict[int | None, list[Sample]] = defaultdict(list)
        by_pod: defaultdict[str, list[Sample]] = defaultdict(list)
        for s in samples:
            (by_netns[s.netns] if s.pod_uid is None else by_pod[s.pod_uid]).append(s)
        groups: dict[ResourceKey, list[Sample]] = {}
        keyed = [(self.key(inode), got) for inode, got in by_netns.items()]
        for uid, got in by_pod.items():
            inode = self._pod_inodes.get(uid)
            keyed.append((NetnsKey(inode) if inode is not None else PodKey(uid), got))
        for key, got in keyed:
            if key in groups:
                groups[key].extend(got)
            else:
                groups[key] = got
        # list() copies in one step: the event pump thread may add an entry meanwhile
        for key in [k for k in list(self._entries) if isinstance(k, PodKey) and k not in groups]:
            del self._entries[key]
        live: list[ResourceKey] = [NODE]
        live += self._keys.values()
        live += [key for key in groups if isinstance(key, PodKey)]
        return groups, live

    def set_additional_labels(self, additional_labels: Sequence[tuple[str, str]]) -> None:
        """New ``metrics.additionalLabels`` (a config reload): each resource they change is
        rebuilt, which re-attributes its series as a change of its pod's metadata would."""
        self._templates = tuple(additional_labels)
        for key, entry in list(self._entries.items()):
            fresh = self._build(key)
            if fresh.resource.attributes == entry.resource.attributes:
                fresh = _Entry(fresh.signature, entry.resource, fresh.labels)
            self._entries[key] = fresh

    # Lookups (any thread) ----------------------------------------------------------------------

    def resource(self, key: ResourceKey) -> Resource:
        return self._entry(key).resource

    def peer(self, ip: str) -> Peer:
        """Who an address is, as of the last refresh: a pod of this node, this node, or unknown."""
        return self._peers(ip)

    def event_resource(self, inode: int | None) -> Resource:
        """The resource of an event from namespace ``inode`` (``None``: the node). Called per event:
        the common case is two dict lookups."""
        entry = self._entries.get(self.key(inode))
        return entry.resource if entry is not None else self._entry(self.key(inode)).resource

    def compat_labels(self, key: ResourceKey) -> CompatLabels | None:
        """Upstream's entity labels: empty pod and namespace for the node; None for a namespace no
        pod is known for (upstream leaves those out)."""
        if isinstance(key, NodeKey):
            return CompatLabels(extra=tuple(self._entry(key).labels.items()))
        pod = self.attributor.pod(key.uid) if isinstance(key, PodKey) else self.owner(key.inode).pod
        if pod is None:
            return None
        return CompatLabels(pod.namespace, pod.name, tuple(self._entry(key).labels.items()))

    # Building ----------------------------------------------------------------------------------

    def _entry(self, key: ResourceKey) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._build(key)
            if len(self._entries) < self.max_resources:
                self._entries[key] = entry
            else:
                self.overflow += 1
        return entry

    def _signature(self, key: ResourceKey) -> tuple[Any, ...]:
        if isinstance(key, NodeKey):
            return (self._host_inode,)
        if isinstance(key, PodKey):
            pod = self.attributor.pod(key.uid)
            return (pod.resource_version if pod else None,)
        owner = self.owner(key.inode)
        ns = self._cycle.namespaces.get(key.inode)
        return (owner.pod_uid, owner.pod.resource_version if owner.pod else None, ns.name if ns is not None else None)

    def _build(self, key: ResourceKey) -> _Entry:
        signature = self._signature(key)
        if isinstance(key, NodeKey):
            return _Entry(signature, node_resource(self.identity, self._host_inode), self._labels(None))
        if isinstance(key, PodKey):
            pod = self.attributor.pod(key.uid)
            if pod is None:
                return _Entry(signature, pod_uid_resource(self.identity, key.uid), {})
            labels = self._labels(pod)
            return _Entry(signature, pod_resource(self.identity, None, pod, labels), labels)
        owner = self.owner(key.inode)
        if owner.pod is not None:
            labels = self._labels(owner.pod)
            return _Entry(signature, pod_resource(self.identity, key.inode, owner.pod, labels), labels)
        ns = self._cycle.namespaces.get(key.inode)
        name = ns.name if ns is not None else None
        return _Entry(signature, netns_resource(self.identity, key.inode, name, owner.pod_uid), {})

    def _labels(self, pod: PodInfo | None) -> dict[str, str]:
        return render_additional_labels(self._templates, pod) if self._templates else {}
