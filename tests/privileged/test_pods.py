# SPDX-License-Identifier: Apache-2.0
"""A namespace whose process sits in a kubelet-shaped cgroup, a pod served by the Kubernetes API
stand-in to the real client: the receiver gets the pod's metrics under the pod's resource, the
compat endpoint labels them with the pod, and after the pod's delete event it is gone."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Event
from tests.helpers import cycle
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod, make_replicaset
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port
from tests.privileged.podutil import pod_cgroup

require_root()
pytestmark = pytest.mark.privileged

NODE = "node-a"
UID = "k8s.pod.uid"


def compat(agent: Agent) -> dict[tuple, float]:
    body = urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def test_pod_attribution_end_to_end(tmp_path, monkeypatch):
    uid = str(uuid.uuid4())
    name = "web-7d4b9c-x2x9q"
    with KubeAPIServer() as api, OTLPReceiver() as rx, netns() as a, netns() as plain:
        plain.sleeper()
        sleeper = a.sleeper()
        with pod_cgroup(sleeper.pid, uid, container_id(uid, "app")):
            api.add_replicaset(make_replicaset("web-7d4b9c", "shop", deployment="web"))
            api.add_pod(make_pod(name, "shop", uid, NODE, labels={"app": "web", "tier": "fe"},
                                 owner=("ReplicaSet", "web-7d4b9c"), pod_ip="10.244.1.17"))
            api.add_pod(make_pod("node-exporter-abc", "monitoring", str(uuid.uuid4()), NODE, host_network=True))
            api.add_pod(make_pod("elsewhere", "shop", str(uuid.uuid4()), "node-b"))
            monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
            config = parse({
                "address": "127.0.0.1:0", "nodeName": NODE, "clusterName": "c1",
                "metrics": {"probes": [{"name": "udp"}, {"name": "netdev"}],
                            "additionalLabels": ["app=${labels:app}", "team=x_${labels:tier}"]},
                "otlp": {"endpoint": rx.http_endpoint},
            }, "test", environ={})
            agent = Agent(config)
            try:
                agent.open()
                assert agent.pods.wait_synced(15), agent.pods.status()
                cycle(agent)
                udp_to_closed_port(a, 7)
                cycle(agent)

                (res,) = [r for r in rx.resources() if r.get(UID) == uid]
                assert res == {
                    "host.name": res["host.name"], "k8s.node.name": NODE, "k8s.cluster.name": "c1",
                    "k8s.namespace.name": "shop", "k8s.pod.name": name, "k8s.pod.uid": uid,
                    "k8s.pod.ip": "10.244.1.17", "k8s.pod.start_time": "2026-08-20T09:14:02Z",
                    "k8s.replicaset.name": "web-7d4b9c", "k8s.replicaset.uid": res["k8s.replicaset.uid"],
                    "k8s.deployment.name": "web", "k8s.deployment.uid": res["k8s.deployment.uid"],
                    "kubeskoop.netns.inode": a.inode,
                    "service.name": "web", "service.namespace": "shop", "service.instance.id": f"shop.{name}",
                    "app": "web", "team": "x_fe",
                }
                assert rx.value("kubeskoop.udp.noports", resource={UID: uid}) == 7
                # The plain namespace stays a namespace; the host is the node.
                plain_res = next(r for r in rx.resources() if r.get("kubeskoop.netns.inode") == plain.inode)
                assert "k8s.pod.name" not in plain_res and plain_res["kubeskoop.netns.name"] == plain.name

                series = compat(agent)
                labels = (("app", "web"), ("k8s_namespace", "shop"), ("k8s_node", NODE), ("k8s_pod", name), ("team", "x_fe"))
                assert series[("kubeskoop_udp_noports", labels)] == 7
                host = (("app", ""), ("k8s_namespace", ""), ("k8s_node", NODE), ("k8s_pod", ""), ("team", "x_"))
                assert ("kubeskoop_netdev_rxbytes", host) in series
                assert not [k for k in series if ("k8s_pod", "elsewhere") in k[1]]
                assert series[("kubeskoop_agent_compat_unattributed_namespaces", (("k8s_node", NODE),))] >= 1

                # Events carry the same pod resource, additionalLabels included.
                agent.events.emit(Event("kubeskoop.test.synthetic", "TEST", a.inode, (("network.transport", "udp"),)))
                agent.events.flush()
                rx.wait_log_requests(1)
                (record,) = rx.log_records(event_name="kubeskoop.test.synthetic")
                assert record.resource == res

                status = agent.status()
                assert status["host_network_pods"] == ["monitoring/node-exporter-abc"]
                assert status["kubernetes"]["state"] == "synced"
                assert {"inode": a.inode, "pid": sleeper.pid, "name": a.name, "host": False,
                        "pod": f"shop/{name}", "pod_uid": uid} in status["namespaces"]

                # The pod is deleted in the API while its process lingers: the pod resource goes
                # out once more, then the namespace is a plain one (with the UID its cgroup names).
                api.delete_pod("shop", name)
                rx.wait_for(lambda: agent.pods.get(uid) is None, timeout=10)
                rx.clear()
                cycle(agent)
                assert sorted(r.get("k8s.pod.name", "-") for r in rx.resources() if r.get(UID) == uid) == ["-", name]
                rx.clear()
                cycle(agent)
                (after,) = [r for r in rx.resources() if r.get(UID) == uid]
                assert "k8s.pod.name" not in after and after["kubeskoop.netns.inode"] == a.inode
                assert rx.value("kubeskoop.udp.noports", resource={UID: uid}) == 7, "counts carry over"
                assert not [k for k in compat(agent) if ("k8s_pod", name) in k[1]]
            finally:
                agent.stop()
