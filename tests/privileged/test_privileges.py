# SPDX-License-Identifier: Apache-2.0
"""The agent as a process without capabilities (``setpriv``: root, but nothing in its effective,
permitted or bounding sets), as a container whose capabilities were all dropped: the probes the
kernel refuses are reported failed with the reason, logged once, and ``/readyz`` says why."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.agentproc import AgentProcess, get
from tests.privileged.netnsutil import netns, netns_inode_of_pid, require_root

require_root()
pytestmark = pytest.mark.privileged

PROBES = {"metrics": {"probes": [{"name": "netdev"}, {"name": "tcp"}, {"name": "tcpsummary"}]}}
NO_CAPS = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")


def test_without_capabilities_refused_probes_are_failed_and_the_agent_not_ready(tmp_path: Path) -> None:
    # A named namespace with no process: read from inside it, which setns(2) refuses without
    # CAP_SYS_ADMIN; an unnamed one with a process of root's: its ns/net refused without
    # CAP_SYS_PTRACE (the sleeper ends by itself if this test's cleanup never runs).
    with netns() as named:
        held = subprocess.Popen(["unshare", "-n", "sleep", "120"], stdin=subprocess.DEVNULL)
        agent = AgentProcess(tmp_path, {}, PROBES, interval=1.0, prefix=NO_CAPS)
        try:
            deadline = time.monotonic() + 40
            while get_status(agent) is None or get_status(agent)["cycles"] < 5:
                assert agent.proc.poll() is None and time.monotonic() < deadline, agent.logs()
                time.sleep(0.2)
            doc = get_status(agent)
            probes = {p["name"]: p for p in doc["probes"]}
            for name in ("netdev", "tcp", "tcpsummary"):  # each refused in the named namespace
                assert probes[name]["state"] == "failed", probes[name]
                assert probes[name]["reason"].startswith("lacks a privilege (")
                assert "Operation not permitted" in probes[name]["reason"]
            assert named.inode in {ns["inode"] for ns in doc["namespaces"]}
            held_inode = netns_inode_of_pid(held.pid)
            assert held_inode is not None and held_inode not in {ns["inode"] for ns in doc["namespaces"]}
            code, body = get(agent.port, "/readyz")
            assert code == 503 and doc["ready"] is False
            for name in ("netdev", "tcp", "tcpsummary"):
                assert f"probe {name} lacks a privilege".encode() in body, body
            assert b"cannot be read without CAP_SYS_PTRACE" in body
            assert get(agent.port, "/healthz") == (200, b"ok\n")  # it runs: a restart changes nothing
            # Over 5 cycles: one line per probe, where every cycle used to log several.
            refusals = [line for line in agent.logs().splitlines() if "privilege" in line]
            assert sorted(line.split("probe ")[1].split(" ")[0] for line in refusals) == [
                "netdev", "tcp", "tcpsummary"], agent.logs()
            assert agent.terminate() == 0
        finally:
            agent.close()
            held.kill()
            held.wait()


def get_status(agent: AgentProcess) -> dict | None:
    try:
        return json.loads(get(agent.port, "/status")[1])
    except OSError:
        return None
