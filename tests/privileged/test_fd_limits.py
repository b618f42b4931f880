# SPDX-License-Identifier: Apache-2.0
"""The agent as a process under a file-descriptor limit of 1024 (``prlimit``, as containerd 2.x
gives containers), with 1100 idle HTTP clients and with 1100 namespaces: collection goes on, and
health says what is wrong when something is.

Namespaces are made by ``unshare -n sleep`` processes that end by themselves after
:data:`SLEEP` seconds if the test's own cleanup never runs; clients connect to the agent's
loopback port only."""

from __future__ import annotations

import contextlib
import json
import math
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_kubeskoop import server
from tests.agentproc import AgentProcess, get
from tests.privileged.netnsutil import netns_inode_of_pid, require_root

require_root()
pytestmark = pytest.mark.privileged

CLIENTS = NAMESPACES = 1100
SLEEP = 600


def status(agent: AgentProcess) -> dict[str, Any]:
    return json.loads(get(agent.port, "/status")[1])


def errors(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {p["name"]: p.get("errors", {}) for p in doc["probes"]}


def wait_cycles(agent: AgentProcess, more_than: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = status(agent)
        if doc["cycles"] > more_than:
            return doc
        assert time.monotonic() < deadline, f"no cycle past {more_than} in {timeout}s: {agent.logs()}"
        time.sleep(0.2)


@pytest.fixture
def agent_under_1024(tmp_path: Path) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path, {}, interval=1.0, prefix=("prlimit", "--nofile=1024:1024"))
    try:
        agent.wait_ready()
        yield agent
    finally:
        agent.close()


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` processes, each in a network namespace of its own."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen(["unshare", "-n", "sleep", str(SLEEP)],
                                          stdin=subprocess.DEVNULL))
        host = netns_inode_of_pid(1) or netns_inode_of_pid(2)
        deadline = time.monotonic() + 60
        while any(netns_inode_of_pid(p.pid) in (None, host) for p in procs):
            assert time.monotonic() < deadline, "namespaces not made within 60s"
            time.sleep(0.2)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_1100_idle_clients_neither_stop_collection_nor_take_its_descriptors(
        agent_under_1024: AgentProcess) -> None:
    agent = agent_under_1024
    before = status(agent)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 2 * CLIENTS, f"the test itself needs {2 * CLIENTS} descriptors (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * CLIENTS), hard))
    clients: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(CLIENTS):  # connect and send nothing
            clients.append(socket.create_connection(("127.0.0.1", agent.port), timeout=10))
        connecting = time.monotonic() - t0
        # Every connection past the cap was answered at once, and closed.
        assert get(agent.port, "/healthz") == (503, b"busy\n")
        # The idle ones holding a slot are cut off after READ_TIMEOUT: health is answered again.
        deadline = time.monotonic() + server.READ_TIMEOUT + 5
        while get(agent.port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, "still busy after the idle clients' read timeout"
            time.sleep(0.2)
        during = status(agent)
        elapsed = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    # Collection went on at its interval, with nothing failing, and the agent kept its
    # descriptors: the clients held at most MAX_CONNECTIONS of them, for READ_TIMEOUT at most.
    assert during["cycles"] >= before["cycles"] + int(elapsed) - 1, (before["cycles"], during["cycles"], elapsed)
    assert errors(during) == errors(before) == {p: {} for p in errors(before)}
    assert during["limits"]["file_descriptors_open"] < 0.5 * 1024, during["limits"]
    # A slot frees after READ_TIMEOUT, so a slow machine's connect loop gets a few more in.
    held = server.MAX_CONNECTIONS * (1 + math.ceil(connecting / server.READ_TIMEOUT))
    assert during["http"]["rejected_busy"] >= CLIENTS - held, (connecting, during["http"])
    assert get(agent.port, "/readyz") == (200, b"ready\n")
    after = status(agent)
    assert after["problems"] == [] and after["http"]["failed"] == 0
    log = agent.logs()
    assert "Traceback" not in log and len(log.splitlines()) < 30, log


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # raising it would need CAP_SYS_RESOURCE


@pytest.mark.parametrize("hard, left_out", [(1024, True), (HARD, False)], ids=["hard-1024", "soft-1024"])
def test_1100_namespaces_under_a_limit_of_1024(tmp_path: Path, hard: int, left_out: bool) -> None:
    assert left_out or hard >= 4 * NAMESPACES, f"a hard limit of {hard} cannot hold the namespaces"
    with namespaces(NAMESPACES) as procs:
        agent = AgentProcess(tmp_path, {}, interval=2.0, prefix=("prlimit", f"--nofile=1024:{hard}"))
        try:
            deadline = time.monotonic() + 60
            while get_or_none(agent, "/status") is None or status(agent)["cycles"] < 2:
                assert agent.proc.poll() is None and time.monotonic() < deadline, agent.logs()
                time.sleep(0.5)
            doc = status(agent)
            ours = {netns_inode_of_pid(p.pid) for p in procs}
            watched = {ns["inode"] for ns in doc["namespaces"]}
            limits = doc["limits"]
            # Whatever is watched is collected without failing, the host's namespace first.
            assert any(ns["host"] for ns in doc["namespaces"])
            assert errors(doc) == {p: {} for p in errors(doc)}, errors(doc)
            assert limits["file_descriptors_open"] < 0.9 * limits["file_descriptors_soft_limit"]
            if left_out:
                assert limits["file_descriptors_soft_limit"] == 1024
                assert len(watched) == limits["namespaces_max"] < NAMESPACES
                assert limits["namespaces_left_out"] >= NAMESPACES + 1 - len(watched)
                code, body = get(agent.port, "/readyz")
                assert code == 503 and b"network namespaces not watched" in body, body
                assert doc["ready"] is False
            else:
                assert limits["file_descriptors_soft_limit"] == hard
                assert ours <= watched and limits["namespaces_left_out"] == 0
                assert get(agent.port, "/readyz") == (200, b"ready\n")
            assert get(agent.port, "/healthz") == (200, b"ok\n")
            assert "soft limit" in agent.logs()
            assert agent.terminate(timeout=60) == 0
        finally:
            agent.close()


def get_or_none(agent: AgentProcess, path: str) -> tuple[int, bytes] | None:
    try:
        return get(agent.port, path)
    except OSError:
        return None
