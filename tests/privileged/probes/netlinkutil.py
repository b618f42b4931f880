# SPDX-License-Identifier: Apache-2.0
"""Helpers for the netlink probes' privileged tests (tcpsummary, qdisc, conntrack).

- :func:`pod_agent`: the real Agent (OTLP/HTTP to a real receiver, the compat endpoint on a free
  port) with test namespaces made into pods: each namespace's first process goes into a
  kubelet-shaped cgroup and the pod is served by the Kubernetes API stand-in, as
  ``tests/privileged/test_pods.py`` does. Everything is undone on exit, even on failure.
- :func:`compat`: one scrape of the compat endpoint as ``{(name, labels): value}``.
- :func:`hold_tcp`: a process in a namespace that opens TCP sockets in known states and holds them.
- :func:`parse_proc_net_tcp`: an independent reading of ``/proc/<pid>/net/tcp{,6}`` (the upstream
  way), used to cross-check sock_diag and by ``bench/tcpsummary.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyroute2.netlink import NETLINK_NETFILTER, NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_DELETE, nfct_msg

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.netlink.conntrack import event_type
from otel_kubeskoop.netlink.core import encode, iter_messages
from otel_kubeskoop.netlink.sockets import dump, open_netlink_sockets
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import TestNetns
from tests.privileged.podutil import pod_cgroup

NODE = "node-nl"
INODE = "kubeskoop.netns.inode"


@dataclass
class Pod:
    ns: TestNetns
    name: str
    namespace: str = "shop"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """The compat endpoint's labels of this pod's series."""
        return (("k8s_namespace", self.namespace), ("k8s_node", NODE), ("k8s_pod", self.name))


def compat(agent: Agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert agent.server is not None
    body = urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5).read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


@contextlib.contextmanager
def pod_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pods: Sequence[Pod],
              metrics: Sequence[str | dict[str, Any]], events: Sequence[dict[str, Any]] = (),
              interval: float | None = None) -> Iterator[tuple[Agent, OTLPReceiver]]:
    """An Agent whose namespaces of ``pods`` are pods; yields (agent, receiver). ``metrics``: probe
    names, or ``{name, args}``. Without
    ``interval`` the agent is opened and the test runs its cycles; with it, the agent runs its own
    cycle thread every ``interval`` seconds (``/healthz`` then reports on that thread)."""
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(KubeAPIServer())
        rx = stack.enter_context(OTLPReceiver())
        for pod in pods:
            sleeper = pod.ns.sleeper()  # the namespace's first process: its representative
            stack.enter_context(pod_cgroup(sleeper.pid, pod.uid, container_id(pod.uid, "app")))
            api.add_pod(make_pod(pod.name, pod.namespace, pod.uid, NODE))
        monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
        config = parse({
            "address": "127.0.0.1:0", "nodeName": NODE,
            "metrics": {"probes": [n if isinstance(n, dict) else {"name": n} for n in metrics]},
            "event": {"probes": list(events)},
            "otlp": {"endpoint": rx.http_endpoint, "timeout": 5, **({"interval": interval} if interval else {})},
        }, "test", environ={})
        agent = Agent(config)
        try:
            if interval:
                agent.start()
            else:
                agent.open()
            assert agent.pods.wait_synced(15), agent.pods.status()
            yield agent, rx
        finally:
            agent.stop()


def probe_states(rx: OTLPReceiver) -> dict[str, str]:
    return {p.attributes["kubeskoop.probe"]: p.attributes["kubeskoop.probe.state"]
            for p in rx.points("kubeskoop.agent.probe.state")}


# --- TCP sockets in known states -----------------------------------------------------------------

_HOLD_TCP = r'''
import json, resource, socket, sys, time
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # room for tens of thousands of sockets
spec = json.loads(sys.argv[1])
keep = []
for item in spec:
    fam = socket.AF_INET6 if ":" in item["host"] else socket.AF_INET
    lst = socket.socket(fam, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((item["host"], item["port"]))
    lst.listen(item["backlog"])
    keep.append(lst)
    for _ in range(item.get("pending", 0)):          # connected, left in the accept queue
        c = socket.create_connection((item["host"], item["port"]))
        keep.append(c)
    for _ in range(item.get("accepted", 0)):         # accepted; unread bytes both ways
        c = socket.create_connection((item["host"], item["port"]))
        a, _ = lst.accept()
        if item.get("to_server"):
            c.sendall(b"x" * item["to_server"])
        if item.get("to_client"):
            a.sendall(b"y" * item["to_client"])
        keep += [c, a]
    for _ in range(item.get("closed", 0)):           # client closes first: TIME_WAIT on its side
        c = socket.create_connection((item["host"], item["port"]))
        a, _ = lst.accept()
        c.close()
        a.recv(1)
        a.close()
time.sleep(0.3)  # FINs and ACKs settle; sent data is acknowledged
print("ready", flush=True)
sys.stdin.read()
'''


def hold_tcp(ns: TestNetns, spec: list[dict[str, Any]]) -> subprocess.Popen[bytes]:
    """Start a process in ``ns`` that makes the sockets ``spec`` describes and holds them until its
    stdin closes (or it is killed with the namespace). Each item: host, port, backlog, and counts
    of ``pending`` (in the accept queue), ``accepted`` (with ``to_server``/``to_client`` unread
    bytes) and ``closed`` (client closed first) connections."""
    import json

    proc = ns.popen(sys.executable, "-c", _HOLD_TCP, json.dumps(spec),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


# --- /proc/net/tcp, the upstream way --------------------------------------------------------------

# /proc/net/tcp "st" column (kernel TCP state numbers) -> semconv names, as sock_diag.TCP_STATES.
PROC_STATES = {1: "established", 2: "syn_sent", 3: "syn_received", 4: "fin_wait_1", 5: "fin_wait_2",
               6: "time_wait", 7: "closed", 8: "close_wait", 9: "last_ack", 10: "listen", 11: "closing"}


@dataclass
class ProcTcp:
    states: Counter[str]
    rx_queue: int  # non-listening sockets
    tx_queue: int
    listen_queue: int  # rx_queue of listening sockets: their accept-queue length


def parse_proc_net_tcp(*texts: bytes) -> ProcTcp:
    """Sockets per state and queue sums from ``/proc/<pid>/net/tcp`` and ``tcp6`` contents."""
    states: Counter[str] = Counter()
    rx = tx = listen = 0
    for text in texts:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 5:
                continue
            state = int(fields[3], 16)
            txq, rxq = (int(v, 16) for v in fields[4].split(b":"))
            states[PROC_STATES[state]] += 1
            if state == 10:
                listen += rxq
            else:
                rx += rxq
                tx += txq
    return ProcTcp(states, rx, tx, listen)


def read_proc_net_tcp(pid: int) -> ProcTcp:
    texts = []
    for name in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{name}", "rb") as f:
            texts.append(f.read())
    return parse_proc_net_tcp(*texts)


# --- conntrack ----------------------------------------------------------------------------------


def conntrack_rule(ns: TestNetns) -> None:
    """An nftables rule that uses conntrack in ``ns`` (so the namespace tracks connections)."""
    ns.run("nft", "add table inet ksk; add chain inet ksk out { type filter hook output priority 0; }; "
           "add rule inet ksk out ct state new counter")


def proc_conntrack_stats(ns: TestNetns) -> dict[str, int]:
    """``/proc/net/stat/nf_conntrack`` of ``ns``, summed over CPUs (``entries`` is the same on every
    line: the namespace's count)."""
    lines = ns.run("cat", "/proc/net/stat/nf_conntrack").stdout.splitlines()
    header = lines[0].split()
    rows = [[int(v, 16) for v in line.split()] for line in lines[1:]]
    out = {h: sum(r[i] for r in rows) for i, h in enumerate(header)}
    out["entries"] = rows[0][0]
    return out


def netlink_socket(ns: TestNetns, protocol: int) -> socket.socket:
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        (sock,) = open_netlink_sockets([(fd, ns.inode)], protocol)
    finally:
        os.close(fd)
    if isinstance(sock, BaseException):
        raise sock
    sock.settimeout(5.0)
    return sock


def flush_request(seq: int) -> bytes:
    """ctnetlink: delete every conntrack entry (each one sends a DESTROY event)."""
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_UNSPEC
    return encode(msg, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq)


def flush_conntrack(ns: TestNetns) -> None:
    with netlink_socket(ns, NETLINK_NETFILTER) as sock:
        dump(sock, flush_request(1), 1, what="conntrack flush")


class EventCounter:
    """An independent ctnetlink event listener in a namespace: counts every event message the
    kernel sends it, by type, plus the ones the kernel dropped for it (its drop counter)."""

    def __init__(self, ns: TestNetns, buffer: int = 64 << 20) -> None:
        self.sock = netlink_socket(ns, NETLINK_NETFILTER)
        self.sock.setsockopt(270, 5, 1)  # SOL_NETLINK, NETLINK_NO_ENOBUFS
        self.sock.setsockopt(socket.SOL_SOCKET, 33, buffer)  # SO_RCVBUFFORCE
        self.sock.bind((0, 0b111))  # NFNLGRP_CONNTRACK_NEW, UPDATE, DESTROY
        self.sock.settimeout(0.1)
        self.by_type: Counter[str] = Counter()
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            for m in iter_messages(data):
                kind = event_type(m.type, m.flags)
                if kind is not None:
                    self.by_type[kind] += 1
            self.last = time.monotonic()

    @property
    def drops(self) -> int:
        return struct.unpack("=9I", self.sock.getsockopt(socket.SOL_SOCKET, 55, 36))[8]

    @property
    def total(self) -> int:
        """Every event the kernel sent this socket: received plus dropped."""
        return sum(self.by_type.values()) + self.drops

    def wait_quiet(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last < quiet:
            assert time.monotonic() < deadline, "events never stopped"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
