# SPDX-License-Identifier: Apache-2.0
from dataclasses import dataclass
from pathlib import Path

from otel_kubeskoop.procfs import ProcDir
from otel_kubeskoop.topology.peers import UNKNOWN, PeerDirectory

HOST = ProcDir(str(Path(__file__).resolve().parents[2] / "fixtures" / "proc_addresses"))


@dataclass
class Pod:
    name: str
    namespace: str
    host_network: bool
    pod_ip: str | None


def test_pods_by_ip_host_network_and_node_addresses_are_the_node():
    peers = PeerDirectory("node-a")
    peers.refresh([Pod("web-1", "shop", False, "10.244.1.5"), Pod("kube-proxy-x", "kube-system", True, "192.0.2.2"),
                   Pod("v6", "shop", False, "FD00:0:0::7"), Pod("pending", "shop", False, None)], HOST)
    assert peers("10.244.1.5") == ("pod", "node-a", "shop", "web-1")
    assert peers("fd00::7") == ("pod", "node-a", "shop", "v6")  # as inet_ntop writes it
    assert peers("192.0.2.2") == ("node", "node-a", "", "")
    assert peers("2001:db8::a01") == ("node", "node-a", "", "")
    assert peers("203.0.113.1") == UNKNOWN
    assert peers("127.0.0.1") == UNKNOWN


def test_unreadable_host_addresses_keep_the_last(tmp_path):
    peers = PeerDirectory("node-a")
    peers.refresh([], HOST)
    peers.refresh([], ProcDir(str(tmp_path)))  # no net/fib_trie there
    assert peers("192.0.2.2") == ("node", "node-a", "", "")
