# SPDX-License-Identifier: Apache-2.0
"""Least privilege, proven: the agent with exactly the Helm chart's capabilities runs every probe
(the chart's config plus every other probe the agent has), each one running or unavailable for the
same kernel reason as with every privilege; and each of those capabilities is needed: without it,
the probes ``otel_kubeskoop.capabilities`` says need it lose something, and no others do.

The agent runs as the chart runs it (tests/deploy/podlike.py): its own network namespace, the
host's /proc and /sys, setpriv limiting its capabilities, no_new_privs. The node it watches has
three namespaces: A, a pod whose process runs as user 65534 and sends UDP and TCP to B; B, a pod
running as root; C, a named namespace with no process. What a probe "loses" is seen from outside,
through an OTLP receiver: it stops running, it counts errors, or its data for A and B no longer
carries their pods.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_kubeskoop import capabilities
from otel_kubeskoop.probes import ALL_PROBES, REGISTRY
from tests.deploy.chart import agent_container, every_probe_config, render
from tests.deploy.podlike import PodlikeAgent, in_netns
from tests.kube_apiserver import container_id
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, veth_pair
from tests.privileged.podutil import pod_cgroup

require_root()
pytestmark = [pytest.mark.privileged]

TRAFFIC = """
import socket, time
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"ksk", ("10.231.0.2", 9))
    u.close()
    t = socket.socket()
    t.settimeout(1)
    try:
        t.connect(("10.231.0.2", 9))
    except OSError:
        pass
    t.close()
    time.sleep(0.05)
"""


@dataclass
class Node:
    tmp: Path
    agent_ns: str
    inodes: set[int]
    pod_uids: set[str]
    config: dict = field(default_factory=dict)


@dataclass
class Run:
    states: dict[tuple[str, str], tuple[str, str]]  # (probe, kind) -> (state, reason)
    errors: dict[str, set[str]]  # probe -> error types counted
    attributed: set[str]  # probes with data on A or B carrying the pod
    logs: str

    def lost(self, baseline: Run) -> dict[str, str]:
        """Probe -> what it lost against ``baseline``."""
        out: dict[str, str] = {}
        for key, (state, reason) in self.states.items():
            if (state, reason) != baseline.states[key]:
                out[key[0]] = f"{key[1]} {state}: {reason}"
        for probe, types in self.errors.items():
            if types - baseline.errors.get(probe, set()):
                out.setdefault(probe, f"errors {sorted(types)}")
        for probe in baseline.attributed - self.attributed:
            out.setdefault(probe, "no data attributed to the test pods")
        return out


def chart_caps() -> frozenset[str]:
    return frozenset(f"CAP_{c}" for c in agent_container(render())["securityContext"]["capabilities"]["add"])


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("least-privilege")
    uid_a, uid_b = str(uuid.uuid4()), str(uuid.uuid4())
    with netns() as agent_ns, netns() as a, netns() as b, netns() as c, veth_pair(a, b):
        sleeper_a = a.popen("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "infinity")
        sleeper_b = b.sleeper()
        time.sleep(0.2)
        with pod_cgroup(sleeper_a.pid, uid_a, container_id(uid_a, "client")), \
                pod_cgroup(sleeper_b.pid, uid_b, container_id(uid_b, "server")):
            traffic = a.popen("python3", "-c", TRAFFIC)
            try:
                yield Node(tmp, agent_ns.path, {a.inode, b.inode}, {uid_a, uid_b}, every_probe_config())
            finally:
                traffic.kill()
                traffic.wait()
        assert c.pids() == [], "C stays a namespace with no process"


def observe(node: Node, caps: frozenset[str] | None) -> Run:
    rx = OTLPReceiver()
    in_netns(node.agent_ns, rx.start)
    config = {**node.config, "otlp": {"endpoint": rx.http_endpoint, "interval": 1}}
    agent = PodlikeAgent(node.tmp, node.agent_ns, caps, config)
    try:
        agent.wait_cycles(4)
        time.sleep(1.5)  # one more export after the fourth cycle
        status = agent.status()
    finally:
        agent.close()
        rx.stop()
    errors: dict[str, set[str]] = {}
    for p in rx.points("kubeskoop.agent.probe.errors"):
        if p.value:
            errors.setdefault(str(p.attributes["kubeskoop.probe"]), set()).add(str(p.attributes["error.type"]))
    attributed = set()
    for spec in ALL_PROBES:
        for instrument in spec.instruments:
            if any(pt.resource.get("kubeskoop.netns.inode") in node.inodes and pt.resource.get("k8s.pod.uid") in node.pod_uids
                   or pt.resource.get("k8s.pod.uid") in node.pod_uids for pt in rx.points(instrument.name)):
                attributed.add(spec.name)
                break
    states = {(p["name"], p["kind"]): (p["state"], p.get("reason") or p.get("error") or "") for p in status["probes"]}
    return Run(states, errors, attributed, agent.logs())


@pytest.fixture(scope="module")
def baseline(node) -> Run:
    """Every capability (root as the test runs)."""
    return observe(node, None)


def test_every_probe_runs_with_the_charts_capabilities(node, baseline):
    run = observe(node, chart_caps())
    configured = {(p["name"], "metrics") for p in node.config["metrics"]["probes"]} | {
        (p["name"], "events") for p in node.config["event"]["probes"]}
    assert set(run.states) == configured
    for key, (state, reason) in run.states.items():
        assert state in ("running", "unavailable"), (key, state, reason)
        # unavailable only where every privilege does not help either: a kernel reason
        assert (state, reason) == baseline.states[key], (key, reason, baseline.states[key])
    assert run.errors == baseline.errors == {}
    assert run.attributed == baseline.attributed
    # the traffic reached the probes that see it, so attribution was really checked
    assert {"netdev", "tcp", "udp", "fd", "io", "tcpsummary", "qdisc", "conntrack", "flow"} <= baseline.attributed
    assert "lacks" not in run.logs, "run logs no capability the configured probes lack"


@pytest.mark.parametrize("removed", sorted(chart_caps()))
def test_each_capability_is_needed_by_exactly_the_probes_the_table_names(node, baseline, removed):
    caps = chart_caps() - {removed}
    run = observe(node, caps)
    lost = run.lost(baseline)
    configured = [REGISTRY[name] for name in {k[0] for k in run.states}]
    predicted = set(capabilities.missing(configured, caps))
    print(f"without {removed}: " + "; ".join(f"{p}: {why}" for p, why in sorted(lost.items())))
    assert lost, f"nothing needs {removed}: drop it from the chart"
    assert set(lost) <= predicted, f"lost without {removed} but not in the table: {set(lost) - predicted}"
    # what the table predicts is seen wherever the test can see it: probes that run with every
    # privilege, minus those whose only loss would be pod attribution of data they did not have
    observable = {name for name in predicted if baseline.states.get((name, "metrics"), ("", ""))[0] == "running"
                  and (name in baseline.attributed or any(n != capabilities.SCAN
                                                            for n in capabilities.missing([REGISTRY[name]], caps)[name]))}
    assert observable <= set(lost), f"the table says {observable - set(lost)} need {removed}, but they lost nothing"
    for name in lost:
        assert f"probe {name} lacks" in run.logs, f"run does not log what {name} lacks"
