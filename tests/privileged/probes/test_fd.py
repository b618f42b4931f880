# SPDX-License-Identifier: Apache-2.0
"""fd on the real kernel: processes the test starts (with threads, files and sockets), put in
kubelet-shaped pod cgroups, one of them in the host's network namespace (a hostNetwork pod).

Expected values are counted here independently (listing /proc/<pid>/fd while the workers are
idle) and from what the test opened, and must match the probe exactly, per pod UID. The end-to-end
test runs the agent with ``fd`` and ``io`` against the Kubernetes API stand-in, a real OTLP
receiver and the compat endpoint.
"""

from __future__ import annotations

import os
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import fd
from tests.helpers import cycle
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root
from tests.privileged.podutil import pod_cgroup
from tests.privileged.probes.podworker import fd_links, host_popen, pid_io, start_worker

require_root()
pytestmark = pytest.mark.privileged

OPENFD, OPENSOCKET = "kubeskoop.fd.openfd", "kubeskoop.fd.opensocket"
BASE = 5  # a worker's descriptors: stdin, stdout, stderr, /dev/zero, /dev/null


class FdRun:
    def __init__(self) -> None:
        self.ctx = ProbeContext("fd")
        self.probe = fd.SPEC.factory(fd.SPEC.args(), self.ctx)
        self.probe.start()

    def collect(self) -> dict[tuple[str, str], int]:
        """One collection in a new cycle: {(instrument, pod uid): value}; other pods on this
        machine (another test's) are there too, and every assertion names its pod."""
        self.ctx.cycle = Cycle()
        out = {}
        for s in self.probe.collect():
            assert s.pod_uid is not None and s.netns is None and s.attributes == ()
            key = (s.instrument.name, s.pod_uid)
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
        assert not self.ctx.errors, self.ctx.errors
        return out


def counted(*pids: int) -> tuple[int, int]:
    links = [t for pid in pids for t in fd_links(pid)]
    return len(links), sum(t.startswith("socket:") for t in links)


def test_fd_per_pod_exact():
    uid, host_uid = str(uuid.uuid4()), str(uuid.uuid4())
    with netns() as a:
        app = start_worker(a.popen, threads=3)
        side = start_worker(a.popen, threads=0)
        agent = start_worker(host_popen, threads=2)
        try:
            with pod_cgroup(app.pid, uid, container_id(uid, "app")), \
                    pod_cgroup(side.pid, uid, container_id(uid, "sidecar")), \
                    pod_cgroup(agent.pid, host_uid, container_id(host_uid, "agent")):
                run = FdRun()
                app("files", 4)
                app("sockets", 5)
                side("sockets", 2)
                agent("sockets", 3)
                assert len(os.listdir(f"/proc/{app.pid}/task")) == 4, "the app has 4 threads, one descriptor table"

                got = run.collect()
                assert (got[(OPENFD, uid)], got[(OPENSOCKET, uid)]) == counted(app.pid, side.pid)
                assert got[(OPENFD, uid)] == (BASE + 4 + 5) + (BASE + 2)
                assert got[(OPENSOCKET, uid)] == 5 + 2
                # The hostNetwork pod: its process is in the host namespace, its values its own.
                assert (got[(OPENFD, host_uid)], got[(OPENSOCKET, host_uid)]) == counted(agent.pid) == (BASE + 3, 3)

                app("sockets", 4)
                app("files", 1)
                again = run.collect()
                assert again[(OPENFD, uid)] == got[(OPENFD, uid)] + 5
                assert again[(OPENSOCKET, uid)] == got[(OPENSOCKET, uid)] + 4
                assert again[(OPENFD, host_uid)] == got[(OPENFD, host_uid)]

                side.stop()  # a process that exits takes its descriptors with it
                after = run.collect()
                assert (after[(OPENFD, uid)], after[(OPENSOCKET, uid)]) == counted(app.pid) == (BASE + 5 + 9, 9)
        finally:
            agent.stop()


# --- End to end: the agent, the Kubernetes API stand-in, a real OTLP receiver, the compat endpoint


NODE = "node-a"
UID = "k8s.pod.uid"


def compat_series(agent) -> dict[tuple, float]:
    """The compat endpoint parsed as Prometheus text; a series seen twice fails (upstream's fd
    probe emitted openfd twice per pod, which made its registry reject the scrape)."""
    body = urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5).read().decode()
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def test_fd_and_io_end_to_end(tmp_path, monkeypatch):
    uid, host_uid = str(uuid.uuid4()), str(uuid.uuid4())
    name, host_name = "web-5d8f7c-abcde", "node-agent-x7k2p"
    with KubeAPIServer() as api, OTLPReceiver() as rx, netns() as a:
        app = start_worker(a.popen, threads=3)
        node_agent = start_worker(host_popen, threads=1)
        try:
            with pod_cgroup(app.pid, uid, container_id(uid, "app")), \
                    pod_cgroup(node_agent.pid, host_uid, container_id(host_uid, "agent")):
                api.add_pod(make_pod(name, "shop", uid, NODE))
                api.add_pod(make_pod(host_name, "monitoring", host_uid, NODE, host_network=True))
                monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
                config = parse({
                    "address": "127.0.0.1:0", "nodeName": NODE,
                    "metrics": {"probes": [{"name": "fd"}, {"name": "io"}, {"name": "netdev"}]},
                    "otlp": {"endpoint": rx.http_endpoint},
                }, "test", environ={})
                agent = Agent(config)
                try:
                    agent.open()
                    assert agent.pods.wait_synced(15), agent.pods.status()
                    app("sockets", 3)
                    node_agent("sockets", 2)
                    cycle(agent)
                    app("read", 100)
                    node_agent("read", 5)
                    cycle(agent)

                    # OTLP: one resource per pod. The pod with its own namespace keeps one
                    # resource for its namespace-level and process-level data; the hostNetwork
                    # pod gets a resource of its own (not the node's), without a namespace inode.
                    (res,) = [r for r in rx.resources() if r.get(UID) == uid]
                    assert res["k8s.pod.name"] == name and res["kubeskoop.netns.inode"] == a.inode
                    (hres,) = [r for r in rx.resources() if r.get(UID) == host_uid]
                    assert hres["k8s.pod.name"] == host_name and "kubeskoop.netns.inode" not in hres
                    assert rx.value("kubeskoop.fd.openfd", resource={UID: uid}) == counted(app.pid)[0] == BASE + 3
                    assert rx.value("kubeskoop.fd.opensocket", resource={UID: uid}) == 3
                    assert rx.value("kubeskoop.fd.openfd", resource={UID: host_uid}) == counted(node_agent.pid)[0]
                    assert rx.value("kubeskoop.fd.opensocket", resource={UID: host_uid}) == 2
                    # Counters are the increase since the agent's first collection.
                    assert rx.value("kubeskoop.io.readsyscall", resource={UID: uid}) == 100 + 1
                    assert rx.value("kubeskoop.io.writesyscall", resource={UID: uid}) == 1
                    assert rx.value("kubeskoop.io.readsyscall", resource={UID: host_uid}) == 5 + 1
                    assert not [p for p in rx.points("kubeskoop.fd.openfd") if UID not in p.resource], \
                        "process-level data never lands on the node"

                    # Compat: upstream names and labels, raw kernel sums, one series per pod.
                    series = compat_series(agent)
                    pod = (("k8s_namespace", "shop"), ("k8s_node", NODE), ("k8s_pod", name))
                    host = (("k8s_namespace", "monitoring"), ("k8s_node", NODE), ("k8s_pod", host_name))
                    assert series[("kubeskoop_fd_openfd", pod)] == BASE + 3
                    assert series[("kubeskoop_fd_opensocket", pod)] == 3
                    assert series[("kubeskoop_fd_openfd", host)] == counted(node_agent.pid)[0]
                    assert series[("kubeskoop_io_readsyscall", pod)] == pid_io(app.pid)[0]
                    assert series[("kubeskoop_io_writesyscall", host)] == pid_io(node_agent.pid)[1]
                    openfd = [labels for (n, labels) in series if n == "kubeskoop_fd_openfd"]
                    assert pod in openfd and host in openfd
                    assert not [labels for labels in openfd if ("k8s_pod", "") in labels]
                finally:
                    agent.stop()
        finally:
            node_agent.stop()
