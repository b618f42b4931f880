# SPDX-License-Identifier: Apache-2.0
"""A real Prometheus scrapes the agent's KubeSkoop-compatible endpoint: a PromQL query through its
HTTP API returns the pod's kubeskoop_udp_noports with the value the test caused, labelled with the
pod; and at a 2 s scrape of a 5 s collection, `irate` and `rate` of a steady counter are right at
every point."""

from __future__ import annotations

import sys
import time
import uuid

import pytest

from tests.e2e.prometheus import Prometheus, eventually
from tests.agentproc import AgentProcess
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port
from tests.privileged.podutil import pod_cgroup

require_root()
pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

NODE = "prom-node"
RATE = 20  # datagrams per second from the steady sender
# Sends RATE datagrams a second to a closed port, on an absolute schedule (a late send catches up).
STEADY_SENDER = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = time.monotonic()
while True:
    s.sendto(b"ksk", ("127.0.0.1", 9))
    t += {1 / RATE}
    time.sleep(max(0.0, t - time.monotonic()))
"""


@pytest.fixture
def prometheus(tmp_path):
    prom = Prometheus(tmp_path)
    yield prom
    prom.stop()


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
                prom = prometheus.start(f"127.0.0.1:{agent.port}")
                selector = f'kubeskoop_udp_noports{{k8s_pod="{name}"}}'
                eventually(lambda: prom.query(selector))  # the pod is scraped (value 0 so far)
                udp_to_closed_port(a, 7)
                result = eventually(lambda: [r for r in prom.query(selector) if r["value"][1] == "7"])
                (series,) = result
                assert series["metric"] == {
                    "__name__": "kubeskoop_udp_noports", "instance": f"127.0.0.1:{agent.port}",
                    "job": "kubeskoop", "k8s_node": NODE, "k8s_namespace": "payments", "k8s_pod": name,
                }
                # The host namespace is there too, with the empty pod upstream's dashboards select
                # (Prometheus stores an empty label as absent; `k8s_pod=""` matches that).
                host = prom.query('kubeskoop_netdev_rxbytes{k8s_pod=""}')
                assert len(host) == 1 and "k8s_namespace" not in host[0]["metric"]
                assert host[0]["metric"]["k8s_node"] == NODE
                assert agent.terminate() == 0
            finally:
                agent.close()


def test_irate_and_rate_of_a_steady_counter_at_a_2s_scrape(tmp_path, prometheus):
    """Without the collection's timestamp on each sample, a 2 s scrape of a 5 s collection
    stores each value two or three times and then a jump: irate reads 0 at most points and
    about 2.5x the rate at the others."""
    uid = str(uuid.uuid4())
    name = "steady-6c9d8-q7wzt"
    interval = 5.0
    with KubeAPIServer() as api, netns() as a:
        sleeper = a.sleeper()
        with pod_cgroup(sleeper.pid, uid, container_id(uid, "app")):
            api.add_pod(make_pod(name, "payments", uid, NODE))
            agent = AgentProcess(tmp_path, {"KUBECONFIG": api.write_kubeconfig(tmp_path / "kubeconfig"),
                                            "NODE_NAME": NODE}, interval=interval)
            try:
                agent.wait_ready()
                prom = prometheus.start(f"127.0.0.1:{agent.port}", scrape_interval="2s")
                series = f'kubeskoop_udp_noports{{k8s_pod="{name}"}}'
                eventually(lambda: prom.query(series))
                a.popen(sys.executable, "-c", STEADY_SENDER)
                started = time.time()
                time.sleep(42)
                # irate needs two samples in its range: two collection intervals and some slack.
                begin, end, step = started + 3.5 * interval, time.time() - 2, 2.0
                irate = prom.query_range(f"irate({series}[12s])", begin, end, step)
                rate = prom.query_range(f"rate({series}[30s])", started + 7 * interval, end, step)
                stored = prom.query(f"count_over_time({series}[30s])", at=end)
                assert agent.terminate() == 0
            finally:
                agent.close()
    (points,) = [r["values"] for r in irate]
    expected_points = int((end - begin) // step) + 1
    values = [float(v) for _, v in points]
    assert len(values) == expected_points, f"dead points: {points}"
    assert all(0.9 * RATE <= v <= 1.1 * RATE for v in values), f"irate: {values}"
    (rate_points,) = [r["values"] for r in rate]
    assert all(0.9 * RATE <= float(v) <= 1.1 * RATE for _, v in rate_points), f"rate: {rate_points}"
    # Prometheus kept one sample per collection, at its time, not one per scrape.
    (count,) = stored
    assert 5 <= float(count["value"][1]) <= 7, count
