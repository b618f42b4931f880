# SPDX-License-Identifier: Apache-2.0
"""Who an IP address is, for upstream's tuple labels: a pod of this node, this node, or unknown.

Upstream KubeSkoop fills ``src_type``/``dst_type`` and the names beside them from its
controller's IP cache, and writes ``unknown`` without one. The agent has the pods of its own node
from the Kubernetes API, so it names them: a pod's IP is that pod (``pod``, its node, namespace and
name); this node's own addresses, which hostNetwork pods share, are the node (``node``, its name).
Addresses of other nodes and their pods stay ``unknown``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Protocol

from otel_kubeskoop.procfs import FileSource, ParseError
from otel_kubeskoop.procfs.net_addresses import read_addresses

log = logging.getLogger(__name__)

Peer = tuple[str, str, str, str]  # (type, node, namespace, pod)
UNKNOWN: Peer = ("unknown", "", "", "")


class PodAddress(Protocol):
    """What the directory reads of a pod (``topology.pods.PodInfo`` has it)."""

    name: str
    namespace: str
    host_network: bool
    pod_ip: str | None


def canonical(text: str) -> str | None:
    """``text`` as ``inet_ntop`` writes it (RFC 5952 for IPv6); None when it is no address."""
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


class PeerDirectory:
    """ip -> :data:`Peer`, rebuilt from the pod cache and the node's addresses each collection."""

    def __init__(self, node_name: str) -> None:
        self._node = node_name
        self._by_ip: dict[str, Peer] = {}
        self._node_addresses: set[str] = set()

    def refresh(self, pods: Iterable[PodAddress], host: FileSource | None) -> None:
        """From ``pods`` and the addresses of the host namespace (``host``, None before the first
        scan). An unreadable address list keeps the last one."""
        if host is not None:
            try:
                self._node_addresses = read_addresses(host)
            except (OSError, ParseError) as exc:
                log.debug("node addresses unreadable, kept the last ones: %s", exc)
        node: Peer = ("node", self._node, "", "")
        by_ip: dict[str, Peer] = {}
        for text in self._node_addresses:
            ip = canonical(text)
            if ip is not None:
                by_ip[ip] = node
        for pod in pods:
            ip = canonical(pod.pod_ip) if pod.pod_ip else None
            if ip is None:
                continue
            # A hostNetwork pod reports the node's IP as its own.
            by_ip[ip] = node if pod.host_network else ("pod", self._node, pod.namespace, pod.name)
        self._by_ip = by_ip

    def __call__(self, ip: str) -> Peer:
        return self._by_ip.get(ip, UNKNOWN)
