# SPDX-License-Identifier: Apache-2.0
"""Agent wiring that needs no root: endpoints served, and running without Kubernetes API access."""

import dataclasses
import json
import threading
import time
import urllib.request

import pytest

from tests.blackhole import BlackHole

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


def wait_for(predicate, seconds=10.0):
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def test_compat_endpoint_can_be_turned_off(no_kubernetes):
    agent = Agent(parse({"address": "127.0.0.1:0", "compat": {"enabled": False}}, "t", environ={}))
    try:
        agent.start()
        wait_for(lambda: agent.cycles > 0)
        assert get(agent, "/metrics")[0] == 404
        assert get(agent, "/status")[0] == 200 and get(agent, "/readyz")[0] == 200
    finally:
        agent.stop()


class Stalled:
    """A probe whose collection never returns (a wedged read): the loop makes no cycle."""

    def __init__(self, args, ctx):
        self.release = threading.Event()

    def start(self):
        pass

    def collect(self):
        self.release.wait(30)
        return []

    def stop(self):
        self.release.set()


def test_liveness_fails_when_the_first_cycle_never_ends(no_kubernetes, monkeypatch):
    """Finding 2 of issue 11: /healthz said 200 while the first cycle had not ended."""
    from otel_kubeskoop import status
    from otel_kubeskoop.probes import REGISTRY

    monkeypatch.setattr(status, "LIVENESS_SLACK_S", 0.5)
    spec = dataclasses.replace(REGISTRY["udp"], factory=Stalled)
    config = parse({"address": "127.0.0.1:0", "metrics": {"probes": [{"name": "udp"}]}, "otlp": {"interval": 1},
                    "shutdownTimeout": 2}, "t", environ={})
    agent = Agent(config, registry={**REGISTRY, "udp": spec})
    try:
        agent.start()
        assert get(agent, "/healthz")[0] == 200, "the loop has just started"
        wait_for(lambda: get(agent, "/healthz")[0] == 503, seconds=8)
        assert agent.cycles == 0 and get(agent, "/readyz")[0] == 503
        assert json.loads(get(agent, "/status")[1])["healthy"] is False
    finally:
        agent.runtime.runs[0].probe.release.set()
        agent.stop()


def test_health_and_readiness_follow_collection_not_the_backend(no_kubernetes):
    with BlackHole() as hole:
        config = parse({"address": "127.0.0.1:0", "metrics": {"probes": [{"name": "udp"}]}, "otlp": {"interval": 1},
                        "shutdownTimeout": 3}, "t", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": hole.url,
                                                            "OTEL_EXPORTER_OTLP_TIMEOUT": "10000"})
        assert config.otlp.timeout == 10.0, "milliseconds, as the specification says"
        agent = Agent(config)
        try:
            agent.start()
            # /status is the document the cycle publishes after counting itself: wait on it, not the counter.
            wait_for(lambda: json.loads(get(agent, "/status")[1]).get("cycles", 0) >= 4, seconds=12)
            status = json.loads(get(agent, "/status")[1])
            assert get(agent, "/healthz")[0] == 200 and get(agent, "/readyz")[0] == 200
            assert status["otlp"]["state"] == "exporting" and status["otlp"]["exports"]["skipped"] >= 2
            assert status["cycles"] >= 4, "collection kept its 1 s interval while the export hung"
        finally:
            t0 = time.monotonic()
            agent.stop()
            assert time.monotonic() - t0 < 3.5, "stop kept to its 3 s budget"
