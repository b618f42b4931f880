# SPDX-License-Identifier: Apache-2.0
"""1000 create/delete cycles of a namespace+pod: nothing is left behind, fds and memory return.

Nothing may be left behind: every per-namespace structure (pipeline resources, agent resources,
owners, the cgroup cache) holds exactly the namespaces alive now, the pod cache is empty, and
open fds are back where they started. RSS is measured on this test process (agent plus pytest and
the API stand-in, whose event history is capped small), after a warm-up, and must stay within a
4 MiB noise band; ``bench/churn.py`` records the figures.
"""

from __future__ import annotations

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from tests.kube_apiserver import KubeAPIServer
from tests.privileged.churn import DiscardingExporter, churn, footprint
from tests.privileged.netnsutil import require_root

require_root()
pytestmark = pytest.mark.privileged

NODE = "churn-node"
ITERATIONS = 1000
WARMUP = 50
RSS_BAND_KIB = 4 * 1024


def test_pod_churn_leaves_nothing_behind(tmp_path, monkeypatch):
    with KubeAPIServer(history_limit=64) as api:
        monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
        config = parse({"address": "", "nodeName": NODE,
                        "metrics": {"probes": [{"name": n} for n in ("netdev", "tcp", "udp", "ip", "tcpext", "sock")]}},
                       "test", environ={})
        agent = Agent(config, metric_exporter=DiscardingExporter())
        try:
            agent.open()
            assert agent.pods.wait_synced(15)
            agent.cycle()
            assert churn(agent, api, NODE, WARMUP) == WARMUP
            before = footprint(agent)
            assert churn(agent, api, NODE, ITERATIONS) == ITERATIONS
            after = footprint(agent)
        finally:
            agent.stop()
    # Other namespaces on the machine may come and go meanwhile: compare with what is alive now.
    for f in (before, after):
        assert f.owners == f.namespaces  # one owner per live namespace (the host's included)
        assert f.agent_resources <= f.namespaces and f.resources <= f.namespaces
        assert f.cgroup_cache <= f.namespaces - 1
        assert f.pods == 0
    assert after.fds == before.fds
    assert after.rss_kib - before.rss_kib < RSS_BAND_KIB, (before.rss_kib, after.rss_kib)
