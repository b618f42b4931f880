# SPDX-License-Identifier: Apache-2.0
"""Every expression of the compat dashboards, and every variable query, evaluated by a real
Prometheus (Debian's, as tests/e2e starts it) scraping the agent's /metrics while two test pods make
the traffic the panels are about, returns data. The exceptions are the panels of probes this
kernel cannot run (no IPVS, no RDMA device, no virtio-net control path), which must then be
reported unavailable for that kernel reason."""

from __future__ import annotations

import re
import time
import uuid

from otel_kubeskoop.probes import ALL_PROBES
from tests.deploy.test_dashboards import generate
from tests.deploy.chart import every_probe_config
from tests.deploy.podlike import PodlikeAgent
from tests.deploy.promql import metric_names
from tests.deploy.test_dashboards import exprs, sets, variables
from tests.agentproc import free_port
from tests.e2e.prometheus import Prometheus
from tests.e2e.test_prometheus_compat import prometheus  # noqa: F401 - the fixture
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.netnsutil import netns, require_root, veth_pair
from tests.privileged.podutil import pod_cgroup

require_root()


NODE = "dash-node"
NAMESPACE = "shop"
PODS = {"client": "web-7d4f9-x2k8q", "server": "db-0"}
POD_IPS = {"client": "10.231.0.1", "server": "10.231.0.2"}  # veth_pair's defaults
RATE = "20s"
# Kernel features this machine lacks: the probes that need them are unavailable, with the reason.
KERNEL_REASONS = {"ipvs": "IPVS", "rdma": "RDMA", "virtcmdlatency": "virtnet_send_command"}

SERVER = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(8)
conns = []
deadline = time.monotonic() + 180
s.settimeout(1)
while time.monotonic() < deadline:
    try:
        c, _ = s.accept()
        conns.append(c)
    except OSError:
        pass
    for c in conns:
        c.setblocking(False)
        try:
            c.recv(65536)
        except OSError:
            pass
"""
CLIENT = """
import socket, time
keep = socket.create_connection(("10.231.0.2", 80))
connecting = []
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    keep.send(b"x" * 1000)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"ksk", ("10.231.0.2", 9))  # no socket
    u.sendto(b"ksk", ("10.231.0.2", 5000))  # dropped by iptables
    u.close()
    t = socket.socket(); t.setblocking(False)
    try:
        t.connect(("10.231.0.2", 9))  # refused
    except OSError:
        pass
    t.close()
    if len(connecting) < 4:  # SYNs dropped by iptables: the kernel retransmits them
        t = socket.socket(); t.setblocking(False)
        try:
            t.connect(("10.231.0.2", 81))
        except OSError:
            pass
        connecting.append((time.monotonic(), t))
    while connecting and time.monotonic() - connecting[0][0] > 5:
        connecting.pop(0)[1].close()
    time.sleep(0.05)
"""


C = generate.C


def substitute(expr: str) -> str:
    pods = "|".join(PODS.values())
    return (expr.replace("$__rate_interval", RATE).replace("$node", NODE).replace("$namespace", NAMESPACE)
            .replace("$pod", pods))


def probe_of(expr: str) -> set[str]:
    by_name = {s.compat: p.name for p in ALL_PROBES for s in p.instruments if s.compat}
    return {by_name[n] for n in metric_names(expr) if n in by_name}


def test_every_compat_expression_returns_data(tmp_path, prometheus):
    uids = {role: str(uuid.uuid4()) for role in PODS}
    with KubeAPIServer() as api, netns() as a, netns() as b, veth_pair(a, b):
        b.run("iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "81", "-j", "DROP")
        b.run("iptables", "-w", "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP")
        server = b.popen("/usr/bin/python3", "-c", SERVER)
        time.sleep(0.3)
        # the system's python: a user other than root may run it
        client = a.popen("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", CLIENT)
        procs = {"client": client, "server": server}
        time.sleep(1)
        assert all(p.poll() is None for p in procs.values()), "the traffic runs"
        with pod_cgroup(client.pid, uids["client"], container_id(uids["client"], "app")), \
                pod_cgroup(server.pid, uids["server"], container_id(uids["server"], "db")):
            for role, name in PODS.items():  # the veth addresses: tuple labels name pods by IP
                api.add_pod(make_pod(name, NAMESPACE, uids[role], NODE, labels={"app": role}, pod_ip=POD_IPS[role]))
            port = free_port()
            config = every_probe_config()
            config.update(address=f"127.0.0.1:{port}", otlp={"interval": 1})
            agent = PodlikeAgent(tmp_path, "/proc/self/ns/net", None, config,
                                 env={"KUBECONFIG": api.write_kubeconfig(tmp_path / "kubeconfig"), "NODE_NAME": NODE})
            try:
                status = agent.wait_cycles(1)
                prom = prometheus.start(f"127.0.0.1:{port}")
                unavailable = {p["name"]: p.get("reason", "") for p in status["probes"] if p["state"] != "running"}
                assert set(unavailable) <= set(KERNEL_REASONS), unavailable
                for name, reason in unavailable.items():
                    assert KERNEL_REASONS[name] in reason, (name, reason)
                pending = {}
                for path in sets("compat/"):
                    for expr in exprs(path):
                        if not (probe_of(expr) and probe_of(expr) <= set(unavailable)):
                            pending[expr] = path
                    for var, q in variables(path).items():
                        pending[q] = f"{path} variable {var}"
                assert len(pending) > 100
                started = time.monotonic()
                empty = _wait_all(prom, pending, timeout=120)
                print(f"{len(pending)} compat expressions returned data within {time.monotonic() - started:.0f} s")
                assert not empty, "no data:\n" + "\n".join(f"{where}: {e}" for e, where in empty.items())
                assert all(p.poll() is None for p in procs.values()), "the traffic ran throughout"
                # and the traffic is what they show: drops in iptables, SYN retransmits, flows
                # upstream's tuple metrics name pods in their tuple labels only. A SYN's tuple
                # series lives for its socket's 5 s, so one 20 s window can catch none rising
                # when scrapes come late on a loaded machine: each must rise within a minute.
                rising = [f'sum(rate({C(name)}{{{label}="{pod}"}}[{RATE}])) > 0'
                          for name, label, pod in (("kubeskoop.packetloss.netfilter.tuples", "dst_pod", PODS["server"]),
                                                   ("kubeskoop.tcpretrans.tuples", "src_pod", PODS["client"]),
                                                   ("kubeskoop.flow.bytes", "src_pod", PODS["client"]))]
                flat = _wait_all(prom, dict.fromkeys(rising, "traffic"), timeout=60)
                assert not flat, f"not rising within 60 s: {list(flat)}"
            finally:
                agent.close()
                for p in procs.values():
                    p.kill()


def _wait_all(prom: Prometheus, pending: dict[str, str], timeout: float) -> dict[str, str]:
    """Query each expression until it returns data; what is still empty at ``timeout``."""
    deadline = time.monotonic() + timeout
    left = dict(pending)
    while left and time.monotonic() < deadline:
        for expr in list(left):
            try:
                if _has_data(prom, expr):
                    del left[expr]
            except OSError:
                break  # Prometheus still starting
        time.sleep(1)
    return left


def _has_data(prom: Prometheus, expr: str) -> bool:
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip(), re.DOTALL)
    if match:  # a Grafana variable: the series exist and carry the label, non-empty
        selector, label = match.groups()
        return any(r["metric"].get(label) for r in prom.query(substitute(selector)))
    return bool(prom.query(substitute(expr)))
