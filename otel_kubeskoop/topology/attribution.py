# SPDX-License-Identifier: Apache-2.0
"""Which pod owns each network namespace.

The representative process's ``/proc/<pid>/cgroup`` names the pod UID (kubelet's cgroup layout);
the Kubernetes pod cache describes that UID. The host namespace belongs to the node, and so does
every hostNetwork pod's namespace-level data. No probe knowledge here, and no OpenTelemetry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.topology.cgroup import read_pod_of
from otel_kubeskoop.topology.netns import Netns, NetnsGone
from otel_kubeskoop.topology.podinfo import PodInfo
from otel_kubeskoop.topology.pods import PodCache

log = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True, slots=True)
class Owner:
    """What a namespace belongs to: the node (host), a pod, or nothing known (a plain namespace).

    ``pod_uid`` may be known from the cgroup while ``pod`` is None: the API has not described that
    pod (no API access, or the watch has not caught up yet).
    """

    host: bool = False
    pod_uid: str | None = None
    pod: PodInfo | None = None


HOST = Owner(host=True)
NOBODY = Owner()


class Attributor:
    def __init__(self, pods: PodCache | None) -> None:
        self.pods = pods
        # (inode, pid) -> pod uid from the cgroup file: a process does not change pods.
        self._uids: dict[tuple[int, int | None], str | None] = {}
        self.cgroup_errors = 0

    def _uid(self, ns: Netns) -> str | None:
        key = (ns.inode, ns.pid)
        if key in self._uids:
            return self._uids[key]
        uid = None
        if ns.pid is not None:
            try:
                found = read_pod_of(ns)
                uid = found.pod_uid if found is not None else None
            except (FileNotFoundError, NetnsGone):
                return None  # the process went away: try again with the next representative
            except (ParseError, OSError) as exc:
                self.cgroup_errors += 1
                log.warning("cannot read the cgroup of pid %s (netns %d): %s", ns.pid, ns.inode, exc)
        self._uids[key] = uid
        return uid

    def resolve(self, namespaces: Mapping[int, Netns]) -> dict[int, Owner]:
        """The owner of every namespace; forgets namespaces that are gone."""
        live = {(ns.inode, ns.pid) for ns in namespaces.values()}
        for key in [k for k in self._uids if k not in live]:
            del self._uids[key]
        out: dict[int, Owner] = {}
        for inode, ns in namespaces.items():
            if ns.is_host:
                out[inode] = HOST
                continue
            uid = self._uid(ns)
            if uid is None:
                out[inode] = NOBODY
                continue
            out[inode] = Owner(pod_uid=uid, pod=self.pod(uid))
        return out

    def pod(self, uid: str) -> PodInfo | None:
        if self.pods is None:
            return None
        pod = self.pods.get(uid)
        if pod is None:
            # A static pod's cgroup carries the kubelet's UID; its mirror object in the API has
            # another one and names the kubelet's in this annotation.
            for candidate in self.pods.pods().values():
                if candidate.annotations.get(MIRROR_ANNOTATION) == uid:
                    return candidate
        return pod

    def host_network_pods(self) -> list[PodInfo]:
        if self.pods is None:
            return []
        return [p for p in self.pods.pods().values() if p.host_network]
