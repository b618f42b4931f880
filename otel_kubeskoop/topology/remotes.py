# SPDX-License-Identifier: Apache-2.0
"""Who the peer of a connection is, as a bounded label: a pod, a Service, the node, loopback, or
external.

tcprtt and tcpconnect key their per-peer figures by address in the kernel; user space folds the
addresses into these labels (:mod:`otel_kubeskoop.probes._remotes`), so the series stay few. What
the agent can name:

- ``pod``: a pod of this node, by its IP (the pod cache lists this node's pods only,
  :mod:`otel_kubeskoop.topology.pods`); namespace and name;
- ``node``: one of this node's addresses (hostNetwork pods share them); the node's name;
- ``service``: a Service's ClusterIP (:mod:`otel_kubeskoop.topology.services`): a socket that
  connected through kube-proxy's DNAT keeps the ClusterIP as its peer; namespace and name;
- ``loopback``: 127.0.0.0/8 and ::1, the pod talking to itself;
- ``external``: anything else, which includes pods and nodes elsewhere in the cluster: the agent
  lists only its own node's pods (listing every pod of a cluster from every node costs the API
  server a cluster-wide watch per node), so a pod on another node is external here unless
  reached through its Service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from otel_kubeskoop.topology.peers import Peer

__all__ = ["EXTERNAL", "KINDS", "LOOPBACK", "OVERFLOW", "Remote", "RemoteDirectory", "address"]

Remote = tuple[str, str, str]  # (kind, namespace, name); "" where the kind has none
EXTERNAL: Remote = ("external", "", "")
LOOPBACK: Remote = ("loopback", "", "")
#: the bucket a namespace's remotes past its cap are folded into (probes/_remotes.py)
OVERFLOW: Remote = ("overflow", "", "")
KINDS = ("pod", "service", "node", "loopback", "external", "overflow")

_AF_INET, _AF_INET6 = 2, 10


def address(family: int, raw: bytes) -> str | None:
    """The text of a kernel address (``inet_ntop``'s; an IPv4-mapped IPv6 address as IPv4), or None
    for a family other than AF_INET and AF_INET6."""
    if family == _AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == _AF_INET6:
        ip6 = ipaddress.IPv6Address(raw[:16])
        return str(ip6.ipv4_mapped) if ip6.ipv4_mapped is not None else ip6.compressed
    return None


class RemoteDirectory:
    """``ip -> Remote``: this node's pods and addresses from ``peer``
    (:meth:`ResourceDirectory.peer <otel_kubeskoop.identity.directory.ResourceDirectory.peer>`),
    then the Services of ``service`` (``ip -> (namespace, name) | None``); ``settled()`` is False
    until the Services have been listed once."""

    def __init__(self, peer: Callable[[str], Peer],
                 service: Callable[[str], tuple[str, str] | None] = lambda ip: None,
                 settled: Callable[[], bool] = lambda: True) -> None:
        self._peer = peer
        self._service = service
        self.settled = settled  # False while the Services are not listed yet: "external" may be wrong

    def __call__(self, ip: str) -> Remote:
        kind, node, namespace, name = self._peer(ip)
        if kind == "pod":
            return ("pod", namespace, name)
        if kind == "node":
            return ("node", "", node)
        svc = self._service(ip)
        if svc is not None:
            return ("service", *svc)
        return LOOPBACK if ipaddress.ip_address(ip).is_loopback else EXTERNAL
