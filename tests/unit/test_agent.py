# SPDX-License-Identifier: Apache-2.0
"""Agent wiring that needs no root: endpoints served, and running without Kubernetes API access."""

import json
import urllib.request

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse


@pytest.fixture
def no_kubernetes(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config


def get(agent, path):
    try:
        with urllib.request.urlopen(f"http://{agent.server.bound}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_without_api_access_the_agent_says_so_once_and_runs(no_kubernetes, caplog):
    agent = Agent(parse({"address": "127.0.0.1:0", "metrics": {"probes": [{"name": "udp"}]}}, "t", environ={}))
    try:
        agent.open()
        agent.cycle()
        agent.cycle()
        status = json.loads(get(agent, "/status")[1])
        assert status["kubernetes"]["state"] == "disabled"
        assert "KUBERNETES_SERVICE_HOST" in status["kubernetes"]["last_error"] + status["kubernetes"].get("reason", "")
        assert status["probes"][0]["state"] == "running" and status["cycles"] == 2
        said = [r for r in caplog.records if "Kubernetes" in r.getMessage() or "kubeconfig" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert get(agent, "/metrics")[0] == 200
    finally:
        agent.stop()


def test_compat_endpoint_can_be_turned_off(no_kubernetes):
    agent = Agent(parse({"address": "127.0.0.1:0", "compat": {"enabled": False}}, "t", environ={}))
    try:
        agent.open()
        agent.cycle()
        assert get(agent, "/metrics")[0] == 404
        assert get(agent, "/status")[0] == 200 and get(agent, "/readyz")[0] == 200
    finally:
        agent.stop()
