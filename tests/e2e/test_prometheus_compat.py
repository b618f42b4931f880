# SPDX-License-Identifier: Apache-2.0
"""A real Prometheus (Debian's `prometheus`, started here on loopback) scrapes the agent's
KubeSkoop-compatible endpoint; a PromQL query through its HTTP API returns the pod's
kubeskoop_udp_noports with the value the test caused, labelled with the pod."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_agent_process import AgentProcess, free_port
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port
from tests.privileged.podutil import pod_cgroup

require_root()
pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

NODE = "prom-node"


@pytest.fixture
def prometheus(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "Debian package `prometheus` is installed by `make setup`"
    started: list[subprocess.Popen] = []

    def start(target: str) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "kubeskoop", "static_configs": [{"targets": [target]}]}],
        }))
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
        started.append(subprocess.Popen([
            binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ], stdout=log, stderr=log))
        return port

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(20)


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def eventually(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:  # Prometheus still starting
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s; last: {last!r}")


def test_prometheus_scrapes_the_pods_counter(tmp_path, prometheus):
    uid = str(uuid.uuid4())
    name = "api-5f7c9-k2lmn"
    with KubeAPIServer() as api, netns() as a:
        sleeper = a.sleeper()
        with pod_cgroup(sleeper.pid, uid, container_id(uid, "app")):
            api.add_pod(make_pod(name, "payments", uid, NODE, labels={"app": "api"}))
            agent = AgentProcess(tmp_path, {"KUBECONFIG": api.write_kubeconfig(tmp_path / "kubeconfig"),
                                            "NODE_NAME": NODE})
            try:
                agent.wait_ready()
                prom = prometheus(f"127.0.0.1:{agent.port}")
                selector = f'kubeskoop_udp_noports{{k8s_pod="{name}"}}'
                eventually(lambda: query(prom, selector))  # the pod is scraped (value 0 so far)
                udp_to_closed_port(a, 7)
                result = eventually(lambda: [r for r in query(prom, selector) if r["value"][1] == "7"])
                (series,) = result
                assert series["metric"] == {
                    "__name__": "kubeskoop_udp_noports", "instance": f"127.0.0.1:{agent.port}",
                    "job": "kubeskoop", "k8s_node": NODE, "k8s_namespace": "payments", "k8s_pod": name,
                }
                # The host namespace is there too, with the empty pod upstream's dashboards select
                # (Prometheus stores an empty label as absent; `k8s_pod=""` matches that).
                host = query(prom, 'kubeskoop_netdev_rxbytes{k8s_pod=""}')
                assert len(host) == 1 and "k8s_namespace" not in host[0]["metric"]
                assert host[0]["metric"]["k8s_node"] == NODE
                assert agent.terminate() == 0
            finally:
                agent.close()
