# SPDX-License-Identifier: Apache-2.0
"""Agents as processes on one node with the ``flow`` probe: the old and the new one of a rolling
update, an agent killed (SIGKILL, as at the end of a grace period or by the OOM killer) and what
the next agent or ``otel-kubeskoop cleanup`` does about what it left, and SIGHUP.

The agents scan the whole machine, so they attach in every namespace on it: the lock the
privileged tests share keeps the others' namespaces away meanwhile, and every interface of the
test's namespaces is checked bare at the end. Pods are the flow tests' bridge
(``tests/privileged/probes/test_flow.py``), addresses 10.231.0.0/24 inside the test's namespaces.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import tc_owner
from tests.agentproc import CLI, AgentProcess, get
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import TestNetns, require_root
from tests.privileged.podutil import cgroup_root
from tests.privileged.probes.test_flow import UDP_OVERHEAD, pods_on_a_bridge, udp

require_root()
pytestmark = pytest.mark.privileged

FLOW = {"metrics": {"probes": [{"name": "flow"}]}}
INODE = "kubeskoop.netns.inode"
_FILTER = re.compile(r"handle (0x[0-9a-f]+) (flow_ingress|flow_egress):\[(\d+)\]")
DATAGRAM = 500


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    made: list[AgentProcess] = []
    yield made
    for agent in made:
        agent.close()


def start(agents: list[AgentProcess], tmp_path: Path, rx: OTLPReceiver | None = None,
          prefix: tuple[str, ...] = ()) -> AgentProcess:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint} if rx is not None else {}
    agent = AgentProcess(tmp_path, env, FLOW, interval=1.0, prefix=prefix, name=f"agent{len(agents)}")
    agents.append(agent)
    agent.wait_ready()
    return agent


def flow_handles(ns: TestNetns, dev: str = "eth0") -> dict[str, set[int]]:
    """direction -> handles of the flow filters on the interface's hook."""
    out = {}
    for direction in ("ingress", "egress"):
        text = ns.run("tc", "filter", "show", "dev", dev, direction).stdout
        out[direction] = {int(h, 16) for h, _name, _id in _FILTER.findall(text)}
    return out


def wait_handles(ns: TestNetns, count: int, timeout: float = 15) -> set[int]:
    """The flow filter handles on the pod's eth0 once both hooks have ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        got = flow_handles(ns)
        if len(got["ingress"]) == len(got["egress"]) == count:
            return got["ingress"]
        if time.monotonic() > deadline:
            raise AssertionError(f"{ns.name}: flow filters {got}, expected {count} on each hook")
        time.sleep(0.1)


def bare(*namespaces: TestNetns) -> dict[str, str]:
    """What is left of TC on any interface of the namespaces (empty: nothing)."""
    left = {}
    for ns in namespaces:
        for dev in ns.run("ls", "/sys/class/net").stdout.split():
            shown = (ns.run("tc", "qdisc", "show", "dev", dev).stdout
                     + ns.run("tc", "filter", "show", "dev", dev, "ingress").stdout
                     + ns.run("tc", "filter", "show", "dev", dev, "egress").stdout)
            if "clsact" in shown or "bpf" in shown:
                left[f"{ns.name}/{dev}"] = shown
    return left


def flow_bytes(rx: OTLPReceiver, ns: TestNetns, direction: str) -> int | float:
    return rx.value("kubeskoop.flow.bytes", resource={INODE: ns.inode}, attributes={
        "network.io.direction": direction, "network.transport": "udp",
        "source.address": "10.231.0.1", "destination.address": "10.231.0.2"})


def test_rolling_handover_counts_every_byte_in_the_new_agent_and_leaves_its_filters(
        agents: list[AgentProcess], tmp_path: Path) -> None:
    with pods_on_a_bridge() as h, OTLPReceiver() as rx_old, OTLPReceiver() as rx_new:
        a, b = h.pods
        old = start(agents, tmp_path, rx_old)
        (old_handle,) = wait_handles(a, 1)
        new = start(agents, tmp_path, rx_new)
        handles = wait_handles(a, 2)
        new_handle = (handles - {old_handle}).pop()
        assert wait_handles(b, 2) == handles  # both agents on both pods, at their own handles

        udp(a, b, "10.231.0.2", 5000, 10, DATAGRAM)  # while both run
        assert old.terminate() == 0  # the old agent goes first, as a rolling update does
        assert flow_handles(a) == flow_handles(b) == {"ingress": {new_handle}, "egress": {new_handle}}
        assert "clsact" in a.run("tc", "qdisc", "show", "dev", "eth0").stdout  # in use: stays
        udp(a, b, "10.231.0.2", 5000, 15, DATAGRAM)  # after the old one left

        # The new agent counted both bursts, in both pods; the old one the first.
        per_datagram = DATAGRAM + UDP_OVERHEAD[4]
        rx_new.wait_for(lambda: flow_bytes(rx_new, a, "transmit") == 25 * per_datagram, timeout=15)
        rx_new.wait_for(lambda: flow_bytes(rx_new, b, "receive") == 25 * per_datagram, timeout=15)
        assert flow_bytes(rx_old, a, "transmit") == flow_bytes(rx_old, b, "receive") == 10 * per_datagram
        for agent in (old, new):
            flow_lines = [line.split(": ", 1)[1] for line in agent.logs().splitlines() if "flow" in line]
            assert flow_lines == ["probe flow (metrics) running"], agent.logs()

        assert new.terminate() == 0  # the last one out removes the qdiscs the first one made
        assert bare(h.node, a, b) == {}


@pytest.mark.parametrize("then", ["restart", "cleanup"])
def test_what_a_killed_agent_left_is_removed_by_the_next_agent_or_by_cleanup(
        agents: list[AgentProcess], tmp_path: Path, then: str) -> None:
    with pods_on_a_bridge() as h:
        a, b = h.pods
        killed = start(agents, tmp_path)
        (handle,) = wait_handles(a, 1)
        killed.kill()
        assert flow_handles(a) == {"ingress": {handle}, "egress": {handle}}  # left running
        left = bare(h.node, a, b)
        assert set(left) >= {f"{a.name}/eth0", f"{b.name}/eth0"}
        assert all(f" {tc_owner.MARK_NAME} " in text for text in left.values())

        if then == "restart":
            after = start(agents, tmp_path)
            assert wait_handles(a, 1) != {handle}  # the killed agent's reaped, the new one's on
            assert "removed a TC ingress filter" in after.logs()
            assert after.terminate() == 0
        else:
            done = subprocess.run([CLI, "cleanup"], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            removed = re.search(r"removed (\d+) TC filters and (\d+) clsact qdiscs", done.stdout)
            assert removed is not None, done.stdout
            # Two filters and one qdisc per interface the killed agent attached to.
            assert (int(removed[1]), int(removed[2])) == (2 * len(left), len(left))
        assert bare(h.node, a, b) == {}


def test_cleanup_as_a_prestop_hook_takes_off_its_own_agents_filters_only(
        agents: list[AgentProcess], tmp_path: Path) -> None:
    root = cgroup_root()
    own = root / f"ksk-prestop-{tmp_path.name[-12:]}"
    own.mkdir()
    try:
        with pods_on_a_bridge() as h:
            a, _b = h.pods
            # This agent runs in a cgroup of its own (its container); the other in the test's.
            enter = ("sh", "-c", f'echo $$ > {own}/cgroup.procs && exec "$@"', "sh")
            mine = start(agents, tmp_path, prefix=enter)
            (mine_handle,) = wait_handles(a, 1)
            other = start(agents, tmp_path)
            other_handle = (wait_handles(a, 2) - {mine_handle}).pop()

            hook = subprocess.run([*enter, CLI, "cleanup", "--prestop"], capture_output=True,
                                  text=True, timeout=60)
            assert hook.returncode == 0, hook.stderr
            assert flow_handles(a) == {"ingress": {other_handle}, "egress": {other_handle}}
            assert mine.terminate() == 0 and other.terminate() == 0
            assert bare(*h.pods, h.node) == {}
    finally:
        own.rmdir()


def test_sighup_never_stops_the_agent(agents: list[AgentProcess], tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {}, interval=1.0)
    agents.append(agent)
    agent.wait_ready()
    before = int(json.loads(get(agent.port, "/status")[1])["cycles"])
    for _ in range(3):
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    time.sleep(2.5)
    assert agent.proc.poll() is None, agent.logs()
    assert get(agent.port, "/healthz") == (200, b"ok\n")
    cycles = int(json.loads(get(agent.port, "/status")[1])["cycles"])
    assert cycles >= before + 2, (before, cycles)  # collection went on
    assert "config reload (SIGHUP): unchanged" in agent.logs()  # it reloads (reload.py), nothing more
    assert agent.terminate() == 0
