# SPDX-License-Identifier: Apache-2.0
"""The agent hands its peer directory to the probes through each cycle's snapshot; without API
access the Service list, started by the first lookup, is disabled and names nothing."""

from __future__ import annotations

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.topology.remotes import EXTERNAL, LOOPBACK


def test_each_cycle_carries_the_agent_s_remote_directory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    agent = Agent(parse({"address": "", "metrics": {"probes": [{"name": "udp"}]}}, "t", environ={}))
    try:
        agent.open()
        agent.cycle()
        assert agent.status()["services"]["state"] == "idle"  # no probe has asked
        assert agent.snapshot.remote is agent.remotes
        assert agent.remotes("127.0.0.1") == LOOPBACK
        assert agent.remotes("203.0.113.1") == EXTERNAL
        assert agent.services.wait_synced(5) is False and agent.services.state == "disabled"
        assert agent.overflow()["services.addresses"] == 0
        agent.cycle()
        services = agent.status()["services"]
        assert (services["state"], services["addresses"], services["lists"]) == ("disabled", 0, 0)
        assert "not in a cluster" in services["last_error"]
    finally:
        agent.stop()


@pytest.mark.parametrize(("probes", "names_peers"), [(["udp"], False), (["udp", "tcpconnect"], True), (["tcprtt"], True)])
def test_services_are_listed_from_the_start_when_a_probe_names_peers(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                                    probes: list[str], names_peers: bool) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse({"address": "", "metrics": {"probes": [{"name": p} for p in probes]}}, "t", environ={})
    assert Agent(config).names_peers is names_peers
