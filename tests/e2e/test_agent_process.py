# SPDX-License-Identifier: Apache-2.0
"""The agent as a process, started through the console script the README's `make run` uses,
exporting to a real OTLP receiver; its HTTP endpoints; its shutdown."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.agentproc import CLI, AgentProcess, get
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port

require_root()
pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

INODE = "kubeskoop.netns.inode"


@pytest.fixture
def agent_factory(tmp_path):
    made: list[AgentProcess] = []

    def make(env: dict[str, str]) -> AgentProcess:
        made.append(AgentProcess(tmp_path, env, name=f"agent{len(made)}"))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_agent_process_exports_each_namespace_to_otlp(agent_factory, protocol):
    with OTLPReceiver() as rx, netns() as a:
        a.sleeper()
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        agent = agent_factory({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                               "NODE_NAME": "e2e-node"})
        agent.wait_ready()
        rx.wait_for(lambda: rx.value("kubeskoop.udp.noports", resource={INODE: a.inode}) == 0, timeout=15)
        udp_to_closed_port(a, 7)
        rx.wait_for(lambda: rx.value("kubeskoop.udp.noports", resource={INODE: a.inode}) == 7, timeout=15)
        res = next(r for r in rx.resources() if r.get(INODE) == a.inode)
        assert res["kubeskoop.netns.name"] == a.name and res["k8s.node.name"] == "e2e-node"

        assert get(agent.port, "/healthz") == (200, b"ok\n")
        status_code, body = get(agent.port, "/status")
        status = json.loads(body)
        assert status_code == 200 and status["ready"] and status["otlp"]["enabled"]
        assert status["otlp"]["protocol"] == protocol
        assert {p["name"]: p["state"] for p in status["probes"]} == {
            n: "running" for n in ("netdev", "tcp", "udp", "ip", "tcpext", "sock", "softnet")}
        assert any(ns["inode"] == a.inode and ns["name"] == a.name for ns in status["namespaces"])
        assert status["inuse_probes"]["metrics"][0] == {"name": "netdev", "state": "running"}
        assert get(agent.port, "/debug/pprof/")[0] == 404

        before = len(rx.metric_requests())
        assert agent.terminate() == 0
        assert len(rx.metric_requests()) == before + 1, "a final export at shutdown"
        assert "stopped" in agent.logs()


def test_without_an_endpoint_the_agent_runs_and_serves_status(agent_factory):
    agent = agent_factory({})
    agent.wait_ready()
    status = json.loads(get(agent.port, "/status")[1])
    assert not status["otlp"]["enabled"] and status["cycles"] >= 1
    assert "OTLP off (no endpoint configured)" in agent.logs()
    assert agent.terminate() == 0
    agent.stdout.seek(0)
    assert agent.stdout.read() == b"", "stdout carries only events (JSON lines), and there were none"


def test_invalid_config_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  probes:\n    - name: netdev\notlp:\n  intervall: 5\n")
    proc = subprocess.run([CLI, "run", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{bad}: otlp.intervall: unknown key (did you mean 'interval'?)" in proc.stderr
