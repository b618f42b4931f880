# SPDX-License-Identifier: Apache-2.0
"""The whole path of the per-peer figures: the agent (tcpconnect configured) lists Services from
the API stand-in at start, a pod's namespace connects to a Service ClusterIP (DNAT'ed to another
pod) and to that pod's closed port, and the OTLP receiver gets the counts on the client pod's
resource with the peer named."""

from __future__ import annotations

import uuid

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from tests.helpers import cycle
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod, make_service
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, veth_pair
from tests.privileged.podutil import pod_cgroup
from tests.privileged.probes.conftest import iptables, no_ipv6, require_iptables, serve

require_root()
require_iptables()
pytestmark = pytest.mark.privileged

NODE = "node-r"
CLIENT, SERVER, CLUSTER_IP = "10.231.0.1", "10.231.0.2", "10.96.77.7"
PORT, CLOSED = 5305, 5306
CONNECTS = f"""
import socket
socket.create_connection(({CLUSTER_IP!r}, 80)).close()
for _ in range(2):
    try:
        socket.create_connection(({SERVER!r}, {CLOSED}))
    except ConnectionRefusedError:
        continue
    raise SystemExit("connected to a closed port")
"""


def test_the_receiver_gets_counts_per_named_peer_on_the_pod_resource(tmp_path, monkeypatch):
    uid = str(uuid.uuid4())
    with KubeAPIServer() as api, OTLPReceiver() as rx, netns() as client, netns() as server:
        no_ipv6(client, server)
        sleeper = client.sleeper()
        with pod_cgroup(sleeper.pid, uid, container_id(uid, "app")), veth_pair(client, server):
            client.run("ip", "route", "add", "default", "via", SERVER)
            iptables(client, "-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", "tcp", "--dport", "80",
                     "-j", "DNAT", "--to-destination", f"{SERVER}:{PORT}")
            api.add_pod(make_pod("client", "shop", uid, NODE, pod_ip=CLIENT))
            api.add_pod(make_pod("web-1", "shop", str(uuid.uuid4()), NODE, pod_ip=SERVER))
            api.add_service(make_service("checkout", "shop", (CLUSTER_IP,)))
            monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
            config = parse({"address": "", "nodeName": NODE,
                            "metrics": {"probes": [{"name": "tcpconnect"}]},
                            "otlp": {"endpoint": rx.http_endpoint}}, "test", environ={})
            agent = Agent(config)
            try:
                agent.open()
                assert agent.pods.wait_synced(15) and agent.services.wait_synced(15)
                cycle(agent)
                listener = serve(server, "0.0.0.0", PORT)
                client.python(CONNECTS)
                listener.kill()
                cycle(agent)
                pod = {"k8s.pod.uid": uid, "k8s.pod.name": "client"}
                service = {"kubeskoop.remote.kind": "service", "kubeskoop.remote.namespace": "shop",
                           "kubeskoop.remote.name": "checkout"}
                web = {"kubeskoop.remote.kind": "pod", "kubeskoop.remote.namespace": "shop",
                       "kubeskoop.remote.name": "web-1"}
                assert rx.value("kubeskoop.tcpconnect.remote.attempts", pod, service) == 1
                assert rx.value("kubeskoop.tcpconnect.remote.attempts", pod, web) == 2
                assert rx.value("kubeskoop.tcpconnect.remote.failures", pod, {**web, "error.type": "refused"}) == 2
                assert rx.value("kubeskoop.tcpconnect.attempts", pod) == 3
                assert agent.status()["services"]["state"] == "synced"
            finally:
                agent.stop()
