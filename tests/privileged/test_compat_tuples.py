# SPDX-License-Identifier: Apache-2.0
"""Upstream's tuple labels on the compat endpoint, end to end: two pods on a bridge (as a CNI
wires same-node pods), served by the Kubernetes API stand-in with their pod IPs, the real Agent
with the flow, packetloss and tcpretrans probes. Traffic from one pod to the other is named by
both ends' pods; flow counts it once, although each pod's own flow counters see it."""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.netnsutil import TestNetns, require_root
from tests.privileged.podutil import pod_cgroup
from tests.privileged.probes.conftest import connect_times_out, iptables
from tests.privileged.probes.test_flow import UDP_OVERHEAD, pods_on_a_bridge, udp

require_root()
pytestmark = pytest.mark.privileged

NODE = "node-t"
WEB = "web-5d8f7-x2x9q"


def compat_series(agent: Agent, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body = urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name:
                key = tuple(sorted(s.labels.items()))
                assert key not in out, f"duplicate series {key}"
                out[key] = s.value
    return out


@contextlib.contextmanager
def two_pods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *probes: str) -> Iterator[tuple[Agent, TestNetns, TestNetns]]:
    """web (10.231.0.1, namespace shop) and db (10.231.0.2, namespace data) on a bridge, served by
    the API stand-in; the Agent with ``probes``, opened and synced; yields (agent, web, db)."""
    with pods_on_a_bridge(2) as h, KubeAPIServer() as api:
        web, db = h.pods
        uids = [str(uuid.uuid4()) for _ in h.pods]
        with pod_cgroup(web.sleeper().pid, uids[0], container_id(uids[0], "app")), \
                pod_cgroup(db.sleeper().pid, uids[1], container_id(uids[1], "app")):
            api.add_pod(make_pod(WEB, "shop", uids[0], NODE, pod_ip="10.231.0.1"))
            api.add_pod(make_pod("db-0", "data", uids[1], NODE, pod_ip="10.231.0.2"))
            monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
            agent = Agent(parse({"address": "127.0.0.1:0", "nodeName": NODE,
                                 "metrics": {"probes": [{"name": p} for p in probes]}}, "test", environ={}))
            try:
                agent.open()
                assert agent.pods.wait_synced(15), agent.pods.status()
                yield agent, web, db
            finally:
                agent.stop()


def test_flow_between_two_pods_carries_both_pods_and_counts_once(tmp_path, monkeypatch):
    with two_pods(tmp_path, monkeypatch, "flow") as (agent, web, db):
        agent.cycle()  # attaches to the pods' interfaces
        count, size = 40, 500
        udp(web, db, "10.231.0.2", 5000, count, size)
        agent.cycle()
        packets = compat_series(agent, "kubeskoop_flow_packets")
        octets = compat_series(agent, "kubeskoop_flow_bytes")
    labels = (("dport", "0"), ("dst", "10.231.0.2"), ("dst_namespace", "data"), ("dst_node", NODE),
              ("dst_pod", "db-0"), ("dst_type", "pod"), ("protocol", "UDP"), ("sport", "0"),
              ("src", "10.231.0.1"), ("src_namespace", "shop"), ("src_node", NODE),
              ("src_pod", WEB), ("src_type", "pod"))
    # Seen as web's egress and as db's ingress; counted once.
    assert packets[labels] == count
    assert octets[labels] == count * (size + UDP_OVERHEAD[4])
    # Every series names its ends: no pod labels, no observer.
    assert all({"src_type", "dst_type", "protocol"} <= dict(k).keys() and "k8s_pod" not in dict(k)
               for k in packets)


def test_drops_and_retransmissions_between_two_pods_carry_both_pods(tmp_path, monkeypatch):
    """Datagrams a netfilter rule in db drops, and a connect from web whose SYNs db drops: the
    drops are upstream's packetloss series (ports 0, with k8s_node), the SYN retransmissions its
    tcpretrans series (with the connection's ports)."""
    with two_pods(tmp_path, monkeypatch, "packetloss", "tcpretrans") as (agent, web, db):
        iptables(db, "-A", "INPUT", "-p", "udp", "--dport", "6000", "-j", "DROP")
        iptables(db, "-A", "INPUT", "-p", "tcp", "--dport", "7000", "--syn", "-j", "DROP")
        web.python(SEND.format(count=25))
        connect_times_out(web, "10.231.0.2", 7000)
        agent.cycle()
        drops = compat_series(agent, "kubeskoop_packetloss_total")
        netfilter = compat_series(agent, "kubeskoop_packetloss_netfilter")
        retransmits = compat_series(agent, "kubeskoop_tcpretrans_total")
    ends = {"dst": "10.231.0.2", "dst_namespace": "data", "dst_node": NODE, "dst_pod": "db-0", "dst_type": "pod",
            "src": "10.231.0.1", "src_namespace": "shop", "src_node": NODE, "src_pod": WEB,
            "src_type": "pod"}
    udp_drops = tuple(sorted({**ends, "protocol": "UDP", "sport": "0", "dport": "0", "k8s_node": NODE}.items()))
    assert drops[udp_drops] == 25
    assert netfilter[udp_drops] == 25
    (syn,) = [(dict(k), v) for k, v in retransmits.items() if dict(k)["dport"] == "7000"]
    assert {k: syn[0][k] for k in ends} == ends and syn[0]["protocol"] == "TCP" and int(syn[0]["sport"]) > 0
    assert syn[1] >= 1  # at least the SYN retransmitted after 1 s


SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"x" * 64, ("10.231.0.2", 6000))
"""
