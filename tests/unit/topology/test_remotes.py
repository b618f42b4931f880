# SPDX-License-Identifier: Apache-2.0
"""Who a peer address is: a pod of this node, the node, a Service's ClusterIP, loopback, or
external; and kernel addresses as text."""

from __future__ import annotations

import socket

import pytest

from otel_kubeskoop.topology.peers import UNKNOWN
from otel_kubeskoop.topology.remotes import EXTERNAL, LOOPBACK, RemoteDirectory, address

PEERS = {"10.244.1.5": ("pod", "node-a", "shop", "web-1"), "192.0.2.2": ("node", "node-a", "", "")}
SERVICES = {"10.96.41.7": ("shop", "checkout")}


def directory() -> RemoteDirectory:
    return RemoteDirectory(lambda ip: PEERS.get(ip, UNKNOWN), SERVICES.get)


@pytest.mark.parametrize(("ip", "remote"), [
    ("10.244.1.5", ("pod", "shop", "web-1")),
    ("192.0.2.2", ("node", "", "node-a")),
    ("10.96.41.7", ("service", "shop", "checkout")),
    ("127.0.0.1", LOOPBACK),
    ("127.8.0.1", LOOPBACK),
    ("::1", LOOPBACK),
    ("10.244.2.9", EXTERNAL),  # a pod of another node: not listed here
    ("203.0.113.1", EXTERNAL),
])
def test_classification(ip: str, remote: tuple[str, str, str]) -> None:
    assert directory()(ip) == remote


def test_without_services_a_cluster_ip_is_external() -> None:
    assert RemoteDirectory(lambda ip: UNKNOWN)("10.96.41.7") == EXTERNAL


def test_kernel_addresses_as_text() -> None:
    assert address(socket.AF_INET, socket.inet_aton("10.96.41.7") + bytes(12)) == "10.96.41.7"
    assert address(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "fd00::7")) == "fd00::7"
    # a dual-stack socket connected to an IPv4 peer: the IPv4 address
    assert address(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "::ffff:10.96.41.7")) == "10.96.41.7"
    assert address(0, bytes(16)) is None
