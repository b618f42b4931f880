# SPDX-License-Identifier: Apache-2.0
"""tcpsummary on the real kernel: TCP sockets held open in known states in two pod namespaces.

Every value must match what the test made, exactly, per pod, at a real OTLP receiver and on the
compat endpoint, and must agree with an independent parse of ``/proc/<pid>/net/tcp{,6}`` of the
same namespace taken while the sockets are held (the upstream way of reading them).
"""

from __future__ import annotations

import os
import socket

import pytest

from otel_kubeskoop.netlink.sockets import socket_netns_inode
from tests.helpers import cycle
from tests.privileged.netnsutil import netns, require_root
from tests.privileged.probes.netlinkutil import Pod, compat, hold_tcp, pod_agent, probe_states, read_proc_net_tcp

require_root()
pytestmark = pytest.mark.privileged

UID = "k8s.pod.uid"
STATE = "network.connection.state"

# Namespace a: a listener whose accept queue is over its limit (5 waiting, backlog 4: the kernel
# admits one beyond the limit), one with accepted connections holding unread bytes both ways and
# two connections the client closed first (TIME_WAIT), and an IPv6 listener.
SPEC_A = [
    {"host": "127.0.0.1", "port": 8001, "backlog": 4, "pending": 5},
    {"host": "127.0.0.1", "port": 8002, "backlog": 16, "accepted": 3, "to_server": 1000, "to_client": 500, "closed": 2},
    {"host": "::1", "port": 8003, "backlog": 8, "pending": 2, "accepted": 1, "to_server": 77},
]
EXPECTED_A = {
    "states": {"listen": 3, "established": 5 * 2 + 3 * 2 + 2 * 2 + 1 * 2, "time_wait": 2},
    "rx": 3 * 1000 + 3 * 500 + 77, "tx": 0, "backlog": 5 + 0 + 2, "utilization": 5 / 4,
}
SPEC_B = [{"host": "127.0.0.1", "port": 9001, "backlog": 10, "accepted": 2, "to_client": 3}]
EXPECTED_B = {"states": {"listen": 1, "established": 4, "time_wait": 0}, "rx": 6, "tx": 0, "backlog": 0,
              "utilization": 0.0}

UPSTREAM = {"established": "tcpestablishedconn", "time_wait": "tcptimewaitconn", "close_wait": "tcpclosewaitconn",
            "syn_sent": "tcpsynsentconn", "syn_received": "tcpsynrecvconn"}


def test_tcp_summary_per_pod_exact_and_as_proc_says(tmp_path, monkeypatch):
    with netns() as a, netns() as b:
        pods = [Pod(a, "web-0"), Pod(b, "db-0")]
        with pod_agent(tmp_path, monkeypatch, pods, ["tcpsummary"]) as (agent, rx):
            holders = [hold_tcp(a, SPEC_A), hold_tcp(b, SPEC_B)]
            cycle(agent)
            rx.wait_metric_requests(1)
            series = compat(agent)
            for pod, expected in ((pods[0], EXPECTED_A), (pods[1], EXPECTED_B)):
                proc = read_proc_net_tcp(pod.ns.pids()[0])  # the sleeper: same namespace

                def value(name: str, pod: Pod = pod, **attrs: str) -> float:
                    return rx.value(f"kubeskoop.tcpsummary.{name}", resource={UID: pod.uid}, attributes=attrs or None)

                for state, count in expected["states"].items():
                    assert value("tcpconn", **{STATE: state}) == count == proc.states[state], state
                for state, word in UPSTREAM.items():
                    assert value(word) == proc.states[state] == expected["states"].get(state, 0)
                    assert series[(f"kubeskoop_tcpsummary_{word}", pod.labels)] == proc.states[state]
                assert value("tcprxqueue") == expected["rx"] == proc.rx_queue
                assert value("tcptxqueue") == expected["tx"] == proc.tx_queue
                assert value("tcplistenbacklog") == expected["backlog"] == proc.listen_queue
                assert value("tcplistenbacklog.utilization") == expected["utilization"]
                assert series[("kubeskoop_tcpsummary_tcprxqueue", pod.labels)] == expected["rx"]
                assert series[("kubeskoop_tcpsummary_tcptxqueue", pod.labels)] == expected["tx"]
                total = sum(p.value for p in rx.points("kubeskoop.tcpsummary.tcpconn", resource={UID: pod.uid}))
                assert total == sum(proc.states.values())
                states = {p.attributes[STATE] for p in rx.points("kubeskoop.tcpsummary.tcpconn", resource={UID: pod.uid})}
                assert len(states) == 11
            assert probe_states(rx)["tcpsummary"] == "running"
            run = next(r for r in agent.runtime.runs if r.name == "tcpsummary")
            assert not run.errors, run.errors
            probe = run.probe
            for ns in (a, b):
                assert socket_netns_inode(probe.sockets.get(ns.inode)) == ns.inode
            for holder in holders:
                holder.kill()
                holder.wait()
        assert len(probe.sockets) == 0  # the agent stopped: every socket it had is closed


def sockets_in(inode: int) -> list[int]:
    """This process's socket fds that belong to network namespace ``inode``."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(int(name))) as sock:
                if socket_netns_inode(sock) == inode:
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_sockets_follow_namespaces_and_never_pin_them(tmp_path, monkeypatch):
    with netns() as a:
        with pod_agent(tmp_path, monkeypatch, [Pod(a, "web-0")], ["tcpsummary"]) as (agent, rx):
            probe = next(r for r in agent.runtime.runs if r.name == "tcpsummary").probe
            with netns() as c:  # a named namespace without any process: read through its name
                cycle(agent)
                assert c.inode in probe.sockets and a.inode in probe.sockets
                assert len(sockets_in(c.inode)) == 1
                c_inode = c.inode
                assert rx.value("kubeskoop.tcpsummary.tcpestablishedconn",
                                resource={"kubeskoop.netns.inode": c_inode}) == 0
            cycle(agent)  # c is gone from the scan: its socket is closed
            assert c_inode not in probe.sockets and a.inode in probe.sockets
            assert sockets_in(c_inode) == []
            kept = probe.sockets.get(a.inode)
            cycle(agent)
            assert probe.sockets.get(a.inode) is kept  # cached: not made anew each cycle
