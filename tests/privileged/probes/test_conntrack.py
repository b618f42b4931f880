# SPDX-License-Identifier: Apache-2.0
"""conntrack on the real kernel: counters per pod namespace, and the event probe under churn.

Counters: in pod a (an nftables rule makes it track connections) the test makes 7 UDP flows (7
entries) and sends 4 SYN|FIN segments to a listener (conntrack counts each invalid twice: in OUTPUT
and again in PREROUTING after loopback); pod b tracks nothing. Values must be exact at the OTLP
receiver and on the compat endpoint, and equal the namespace's own /proc/net/stat/nf_conntrack.

Events: 10,000 TCP connections are made and closed in pod a, then its table is flushed, while the
event probe runs. An independent listener in the same namespace counts what ctnetlink sent; the
agent's delivered events (log records at the receiver) plus its counted losses must equal it, and
the agent must stay healthy.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from tests.helpers import cycle
from tests.privileged.netnsutil import netns, require_root
from tests.privileged.probes.netlinkutil import (
    EventCounter,
    Pod,
    compat,
    conntrack_rule,
    flush_conntrack,
    pod_agent,
    probe_states,
    proc_conntrack_stats,
)

require_root()
pytestmark = pytest.mark.privileged

UID = "k8s.pod.uid"
PROBE = {"kubeskoop.probe": "conntrack"}
# kubeskoop.conntrack.<word> -> /proc/net/stat/nf_conntrack column
PROC_COLUMNS = {
    "found": "found", "invalid": "invalid", "ignore": "ignore", "insert": "insert",
    "insertfailed": "insert_failed", "drop": "drop", "earlydrop": "early_drop", "error": "icmp_error",
    "searchrestart": "search_restart", "clashresolve": "clashres", "chaintoolong": "chainlength",
    "entries": "entries",
}

TRAFFIC = r'''
import socket, struct
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 7200))
for _ in range(7):  # 7 flows: 7 source ports, one entry each
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); tx.sendto(b"x", ("127.0.0.1", 7200)); tx.close()
lst = socket.socket(); lst.bind(("127.0.0.1", 7201)); lst.listen()

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(4):  # SYN|FIN: an invalid flag combination; the listener drops it silently
    hdr = struct.pack("!HHIIBBHHH", 42000 + i, 7201, 1, 0, 5 << 4, 0x03, 1024, 0, 0)
    pseudo = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!BBH", 0, 6, len(hdr))
    raw.sendto(hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:], ("127.0.0.1", 0))
'''

CHURN = r'''
import socket
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 7300)); lst.listen(128)
for _ in range({count}):
    c = socket.create_connection(("127.0.0.1", 7300))
    a, _ = lst.accept()
    c.close()
    a.close()
'''


def test_counters_per_pod_exact(tmp_path, monkeypatch):
    with netns() as a, netns() as b:
        conntrack_rule(a)
        conntrack_rule(b)
        pods = [Pod(a, "client-0"), Pod(b, "idle-0")]
        with pod_agent(tmp_path, monkeypatch, pods, ["conntrack"]) as (agent, rx):
            cycle(agent)
            a.python(TRAFFIC)
            proc = {pod.ns.inode: proc_conntrack_stats(pod.ns) for pod in pods}
            cycle(agent)
            rx.wait_metric_requests(2)
            assert probe_states(rx)["conntrack"] == "running"
            assert proc[a.inode]["entries"] == 7 and proc[a.inode]["invalid"] == 4 * 2

            series = compat(agent)
            for pod in pods:
                for word, column in PROC_COLUMNS.items():
                    value = rx.value(f"kubeskoop.conntrack.{word}", resource={UID: pod.uid})
                    assert value == proc[pod.ns.inode][column], (pod.name, word)
            assert rx.value("kubeskoop.conntrack.entries", resource={UID: pods[0].uid}) == 7
            assert rx.value("kubeskoop.conntrack.invalid", resource={UID: pods[0].uid}) == 8
            assert rx.value("kubeskoop.conntrack.entries", resource={UID: pods[1].uid}) == 0
            assert rx.value("kubeskoop.conntrack.invalid", resource={UID: pods[1].uid}) == 0
            assert series[("kubeskoop_conntrack_entries", pods[0].labels)] == 7
            assert series[("kubeskoop_conntrack_invalid", pods[0].labels)] == 8
            assert series[("kubeskoop_conntrack_entries", pods[1].labels)] == 0
            assert series[("kubeskoop_conntrack_insertfailed", pods[0].labels)] == 0
            # The table limit is one node-wide setting: on the node, once.
            with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
                limit = int(f.read())
            (point,) = rx.points("kubeskoop.conntrack.maxentries")
            assert point.value == limit and point.resource.get("service.name") == "otel-kubeskoop"
            host = (("k8s_namespace", ""), ("k8s_node", "node-nl"), ("k8s_pod", ""))
            assert series[("kubeskoop_conntrack_maxentries", host)] == limit
            assert not [k for k in series if k[0] == "kubeskoop_conntrack_maxentries" and k[1] != host]


def test_event_probe_survives_churn_and_accounts_for_every_event(tmp_path, monkeypatch):
    connections = 10_000
    with netns() as a:
        conntrack_rule(a)
        pod = Pod(a, "churn-0")
        events = [{"name": "conntrack", "args": {"eventRate": 500, "eventBurst": 1000}}]
        with pod_agent(tmp_path, monkeypatch, [pod], ["conntrack"], events, interval=1) as (agent, rx):
            reference = EventCounter(a)  # subscribed before any traffic, as the agent already is
            try:
                began = time.monotonic()
                a.python(CHURN.format(count=connections), timeout=300)  # the agent collects meanwhile
                flush_conntrack(a)  # every entry destroyed: a DESTROY event each
                reference.wait_quiet()
                churn_seconds = time.monotonic() - began
                sent = reference.total
                assert reference.by_type["new"] >= connections and reference.by_type["destroy"] >= connections

                def accounted() -> tuple[int, dict[str, int]]:
                    agent.events.flush()
                    rx.wait_metric_requests(len(rx.metric_requests()) + 1, timeout=10)  # fresh counters
                    delivered = len(rx.log_records(resource={UID: pod.uid}))
                    lost = {p.attributes["kubeskoop.loss.reason"]: p.value
                            for p in rx.points("kubeskoop.agent.events.lost", attributes=PROBE)
                            if p.resource.get(UID) == pod.uid or p.attributes["kubeskoop.loss.reason"]
                            in ("decode_error", "export_queue_full", "export_failed")}
                    return delivered, lost

                deadline = time.monotonic() + 60
                delivered, lost = accounted()
                while delivered + sum(lost.values()) != sent and time.monotonic() < deadline:
                    time.sleep(0.5)
                    delivered, lost = accounted()
                assert delivered + sum(lost.values()) == sent, (delivered, lost, sent, dict(reference.by_type))
                assert lost.get("decode_error", 0) == 0 and lost.get("export_failed", 0) == 0
                assert delivered > 0 and lost["rate_limited"] > 0
                # Healthy: both kinds running, no pump errors, the endpoints answer.
                assert set(probe_states(rx).values()) == {"running"}
                assert agent.runtime.pump.errors["conntrack"] == 0
                health = urllib.request.urlopen(f"http://{agent.server.bound}/healthz", timeout=5)
                assert health.status == 200
                runs = [s for s in agent.status()["probes"] if s["name"] == "conntrack"]
                assert [s["state"] for s in runs] == ["running", "running"] and not any(s.get("errors") for s in runs)
                probe = next(r for r in agent.runtime.runs if r.name == "conntrack").probe
                # One event socket per namespace, none for a namespace that is gone (other tests on
                # this machine may add and remove namespaces meanwhile).
                assert a.inode in probe._events and set(dict(probe._events.items())) <= set(agent.runtime.cycle.namespaces)
                # What was delivered is what happened: typed attributes of the pod's connections.
                records = rx.log_records(resource={UID: pod.uid})
                names = {r.event_name for r in records}
                assert names <= {"kubeskoop.conntrack.new", "kubeskoop.conntrack.update", "kubeskoop.conntrack.destroy"}
                new = next(r for r in records if r.event_name == "kubeskoop.conntrack.new")
                assert new.attributes["destination.port"] == 7300 and new.attributes["network.transport"] == "tcp"
                assert new.attributes["kubeskoop.event.type"] == "ConntrackNew"
                print(f"\n{connections} connections in {churn_seconds:.1f}s: {sent} events sent by ctnetlink, "
                      f"{delivered} delivered, lost {lost}")
            finally:
                reference.close()


def test_event_sockets_follow_namespaces(tmp_path, monkeypatch):
    with netns() as a:
        events = [{"name": "conntrack"}]
        with pod_agent(tmp_path, monkeypatch, [Pod(a, "web-0")], ["conntrack"], events) as (agent, rx):
            probe = next(r for r in agent.runtime.runs if r.name == "conntrack").probe
            for _ in range(3):
                with netns() as c:
                    conntrack_rule(c)
                    c.sleeper()
                    cycle(agent)
                    assert c.inode in probe._events and c.inode in probe.stats
                    c.python(CHURN.format(count=5))
                    c_inode = c.inode
                cycle(agent)
                assert c_inode not in probe._events and c_inode not in probe.stats
            assert a.inode in probe._events and set(dict(probe._events.items())) <= set(agent.runtime.cycle.namespaces)
            assert agent.runtime.pump.errors["conntrack"] == 0
            assert set(probe_states(rx).values()) == {"running"}
