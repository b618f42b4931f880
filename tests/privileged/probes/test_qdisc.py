# SPDX-License-Identifier: Apache-2.0
"""qdisc on the real kernel: two pod namespaces joined by a veth whose ends are both named eth0.

Pod a's eth0 has a tbf with a tiny limit and is blasted with UDP: drops show on that pod's eth0 and
nowhere else. Pod b's eth0 has an htb root with a tbf child: both are reported, each with its own
handle and parent. Every value is checked exactly against ``tc -s -j qdisc show`` run inside the
namespace after the traffic settled, at a real OTLP receiver and on the compat endpoint. Both
interfaces being eth0 proves names are resolved inside each namespace.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import cycle
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.netlinkutil import Pod, compat, pod_agent, probe_states

require_root()
pytestmark = pytest.mark.privileged

UID = "k8s.pod.uid"
IF, KIND, HANDLE, PARENT = "network.interface.name", "kubeskoop.qdisc.kind", "kubeskoop.qdisc.handle", "kubeskoop.qdisc.parent"
WORDS = ("bytes", "packets", "drops", "requeues", "overlimits", "qlen", "backlog")

BLAST = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"z" * 1000, ("{dst}", 9))
"""


def rename_to_eth0(ns: TestNetns, dev: str) -> None:
    ns.run("ip", "link", "set", "dev", dev, "down")
    ns.run("ip", "link", "set", "dev", dev, "name", "eth0")
    ns.run("ip", "link", "set", "dev", "eth0", "up")


def tc_view(ns: TestNetns) -> dict[tuple[str, str, str, str], dict[str, int]]:
    """{(interface, kind, handle, parent): counters} as tc reads them inside ``ns``."""
    out = {}
    for q in json.loads(ns.run("tc", "-s", "-j", "qdisc", "show").stdout):
        parent = "root" if q.get("root") else q["parent"]
        out[(q["dev"], q["kind"], q["handle"], parent)] = {w: q[w] for w in WORDS}
    return out


def settle(ns: TestNetns) -> dict:
    """tc's view once two readings 0.2 s apart agree (tbf queues drained)."""
    last = tc_view(ns)
    for _ in range(50):
        time.sleep(0.2)
        now = tc_view(ns)
        if now == last:
            return now
        last = now
    raise AssertionError(f"qdisc counters in {ns.name} never settled: {last}")


def test_drops_on_that_pods_interface_only_and_parent_child_apart(tmp_path, monkeypatch):
    with netns() as a, netns() as b, veth_pair(a, b, "10.233.0.1/24", "10.233.0.2/24") as (dev_a, dev_b):
        for ns in (a, b):
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        rename_to_eth0(a, dev_a)
        rename_to_eth0(b, dev_b)
        a.run("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "3000")
        b.run("tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1")
        b.run("tc", "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate", "100mbit")
        b.run("tc", "qdisc", "add", "dev", "eth0", "parent", "1:1", "handle", "10:", "tbf",
              "rate", "10mbit", "burst", "10kb", "limit", "100kb")
        pods = [Pod(a, "sender-0"), Pod(b, "receiver-0")]
        with pod_agent(tmp_path, monkeypatch, pods, ["qdisc"]) as (agent, rx):
            cycle(agent)
            a.python(BLAST.format(count=300, dst="10.233.0.2"))
            b.python(BLAST.format(count=5, dst="10.233.0.1"))  # some egress through b's htb/tbf
            views = {a.inode: settle(a), b.inode: settle(b)}
            cycle(agent)
            rx.wait_metric_requests(2)
            assert probe_states(rx)["qdisc"] == "running"

            tbf_a = ("eth0", "tbf", next(k[2] for k in views[a.inode] if k[1] == "tbf"), "root")
            assert views[a.inode][tbf_a]["drops"] > 0, views[a.inode]
            series = compat(agent)
            for pod in pods:
                view = views[pod.ns.inode]
                got = {}
                for word in WORDS:
                    for p in rx.points(f"kubeskoop.qdisc.{word}", resource={UID: pod.uid}):
                        key = (p.attributes[IF], p.attributes[KIND], p.attributes[HANDLE], p.attributes[PARENT])
                        got.setdefault(key, {})[word] = p.value
                assert got == view, pod.name  # every qdisc, every counter, exactly as tc reads them
                for word in ("bytes", "packets", "drops", "qlen", "backlog", "overlimits"):
                    expected = sum(c[word] for k, c in view.items() if k[0] != "lo")
                    assert series[(f"kubeskoop_qdisc_{word}", pod.labels)] == expected, (pod.name, word)
            # Drops on pod a's eth0 tbf and nowhere else among the namespaces made here.
            dropping = [(pod.name, key) for pod in pods for key, c in views[pod.ns.inode].items() if c["drops"]]
            assert dropping == [("sender-0", tbf_a)]
            assert series[("kubeskoop_qdisc_drops", pods[1].labels)] == 0
            # Pod b: the htb root and its tbf child, each with its handle and parent.
            assert {k[1:] for k in views[b.inode] if k[0] == "eth0"} == {("htb", "1:", "root"), ("tbf", "10:", "1:1")}
            assert views[b.inode][("eth0", "tbf", "10:", "1:1")]["packets"] > 0
