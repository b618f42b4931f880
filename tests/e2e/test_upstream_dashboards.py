# SPDX-License-Identifier: Apache-2.0
"""Upstream's own Helm chart output runs the agent, and upstream's two Grafana dashboards resolve
every expression against a real Prometheus scraping it every 2 s.

The agent runs the ``config.yaml`` that upstream's chart renders with default values
(tests/fixtures/upstream/helm-configmap-default.yaml), unchanged but for the listen address.
Every panel's expression, with the dashboards' variables set to this node and a pod, must return
series; the RDMA panels return none, as upstream's would: the chart runs no rdma probe."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.prometheus import Prometheus, eventually
from tests.agentproc import AgentProcess, get
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port, veth_pair
from tests.privileged.podutil import pod_cgroup

require_root()
pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
DASHBOARDS = ("kubeskoop-exporter-nodes-dashboard.json", "kubeskoop-exporter-pods-dashboard.json")
NODE = "dash-node"


def panel_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel, rows included."""
    out = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        stack += panel.get("panels", [])
        out += [(panel.get("title", ""), t["expr"]) for t in panel.get("targets", []) if t.get("expr")]
    return out


def test_chart_config_runs_and_both_dashboards_resolve(tmp_path):
    chart = yaml.safe_load((UPSTREAM / "helm-configmap-default.yaml").read_text())["data"]["config.yaml"]
    uid, name, namespace = str(uuid.uuid4()), "api-6b7f9-zr4kd", "payments"
    prom = Prometheus(tmp_path)
    # A pod has an interface besides lo: one end of a veth pair.
    with KubeAPIServer() as api, netns() as a, netns() as peer, veth_pair(a, peer):
        sleeper = a.sleeper()
        with pod_cgroup(sleeper.pid, uid, container_id(uid, "app")):
            api.add_pod(make_pod(name, namespace, uid, NODE))
            agent = AgentProcess(tmp_path, {"KUBECONFIG": api.write_kubeconfig(tmp_path / "kubeconfig"),
                                            "NODE_NAME": NODE, "OTEL_METRIC_EXPORT_INTERVAL": "2000"},
                                 config_text=chart)
            try:
                agent.wait_ready(60)
                status = json.loads(get(agent.port, "/status")[1])
                prom.start(f"127.0.0.1:{agent.port}", scrape_interval="2s")
                udp_to_closed_port(a, 3)
                # Three collections stored: every rate(...[1m]) has two samples or more.
                selector = f'count_over_time(kubeskoop_udp_noports{{k8s_pod="{name}"}}[1m])'
                eventually(lambda: [r for r in prom.query(selector) if float(r["value"][1]) >= 3], timeout=60)
                results = {}
                for file in DASHBOARDS:
                    dashboard = json.loads((UPSTREAM / file).read_text())
                    for title, expr in panel_expressions(dashboard):
                        query = expr.replace("$node", NODE).replace("$namespace", namespace).replace("$pod", name)
                        results[(file, title, expr)] = prom.query(query)
                namespaces = prom.label_values("k8s_namespace")
                pods = prom.label_values("k8s_pod", f'{{k8s_namespace="{namespace}"}}')
                nodes = prom.label_values("node")
                assert agent.terminate() == 0
                logs = agent.logs()
            finally:
                agent.close()
                prom.stop()
    states = {(p["name"], p["kind"]): p["state"] for p in status["probes"]}
    assert set(states.values()) == {"running"}, states
    assert len(states) == 15  # 12 metrics and 3 event probes, as the chart lists them
    assert logs.count("ignored, as upstream KubeSkoop ignores them: debugmode") == 1
    # The dashboards' variables: label_values(k8s_namespace) and the namespace's pods.
    assert namespace in namespaces and pods == [name]
    assert nodes == []  # label_values(node): no KubeSkoop series has it, upstream's neither
    rdma = {k for k in results if re.search(r"kubeskoop_rdma_", k[2])}
    assert len(rdma) == 10 and all(results[k] == [] for k in rdma)
    empty = [k for k, v in results.items() if k not in rdma and not v]
    assert not empty, f"expressions without series: {empty}"
    assert len(results) - len(rdma) == 30 + 27
