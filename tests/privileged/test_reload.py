# SPDX-License-Identifier: Apache-2.0
"""Config reloads on the real kernel: an eBPF probe added and removed under traffic while another
probe's counter goes on, the kernel's BPF program count back where it was, no TC filter left after
``flow`` is removed, SIGHUP reloads a running agent process (and one still starting, once it
runs), 200 reloads leave RSS, fds, threads and BPF programs where they started, a pod's series and
events take new additionalLabels without a reset, and bpfStats turns the programs' run counts on
and off."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
import yaml

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import load, parse
from otel_kubeskoop.probe import Cycle, Event
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.vocabulary import instruments as I
from tests.configmap import ConfigMapVolume
from tests.helpers import MemoryExporter, cycle, points
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, tcp_refused, udp_to_closed_port, veth_pair
from tests.privileged.podutil import pod_cgroup

require_root()

pytestmark = pytest.mark.privileged


def bpf_programs() -> int:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout
    return len(json.loads(out))


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def document(tmp_path, probes, **extra):
    return {"address": "", "otlp": {"interval": 1}, "reload": {"debounce": 0.1},
            "eventStream": {"path": str(tmp_path / "events.sock")},
            "metrics": {"probes": [{"name": p} for p in probes]}, **extra}


@pytest.fixture
def no_kubernetes(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def udp_noports(exporter, inode):
    """The last exported kubeskoop.udp.noports point of namespace ``inode``: (start, value)."""
    for request in reversed(exporter.requests):
        for rm in request.resource_metrics:
            if any(kv.key == "kubeskoop.netns.inode" and kv.value.int_value == inode for kv in rm.resource.attributes):
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == "kubeskoop.udp.noports":
                            p = m.sum.data_points[0]
                            return p.start_time_unix_nano, p.as_int
    return None


def test_ebpf_probe_added_and_removed_under_traffic_the_other_counter_goes_on(no_kubernetes, tmp_path):
    volume = ConfigMapVolume(tmp_path / "cm")
    volume.write(document(tmp_path, ["udp"]))
    exporter = MemoryExporter()
    with netns() as ns:
        ns.sleeper()
        agent = Agent(load(volume.path), metric_exporter=exporter)
        stop = threading.Event()
        traffic = threading.Thread(target=lambda: [udp_to_closed_port(ns, 20) for _ in iter(stop.is_set, True)])
        before = bpf_programs()
        agent.start()
        traffic.start()
        try:
            wait_for(lambda: udp_noports(exporter, ns.inode) is not None)
            start, first = udp_noports(exporter, ns.inode)
            t0 = time.monotonic()
            volume.write(document(tmp_path, ["udp", "packetloss"]))
            wait_for(lambda: any(r.name == "packetloss" and r.state.value == "running" for r in agent.runtime.runs))
            attached = time.monotonic() - t0
            assert bpf_programs() > before
            wait_for(lambda: any(points(r, "kubeskoop.packetloss.total") for r in exporter.requests[-2:]))
            volume.write(document(tmp_path, ["udp"]))
            wait_for(lambda: not any(r.name == "packetloss" for r in agent.runtime.runs))
            removed = time.monotonic()
            wait_for(lambda: bpf_programs() == before, 5)  # the kernel frees them after an RCU grace period
            print("programs gone", time.monotonic() - removed, "s after the reload")
            n = len(exporter.requests)
            wait_for(lambda: len(exporter.requests) > n + 1)
            assert not any(points(r, "kubeskoop.packetloss.total") for r in exporter.requests[-1:])
            start2, last = udp_noports(exporter, ns.inode)
            assert start2 == start and last > first  # the same series, counting on
            assert attached < 5.0, attached
        finally:
            stop.set()
            traffic.join(30)
            agent.stop()
    assert bpf_programs() == before


def tc_filters(ns_name: str, dev: str) -> str:
    out = ""
    for direction in ("ingress", "egress"):
        out += subprocess.run(["ip", "netns", "exec", ns_name, "tc", "filter", "show", "dev", dev, direction],
                              capture_output=True, text=True, check=False).stdout
    return out


def test_flow_removed_leaves_no_tc_filter_or_bpf_program(tmp_path):
    with netns() as ns, netns() as peer, veth_pair(ns, peer) as (dev, _):
        ns.sleeper()
        discovery = NetnsDiscovery()
        cycle = Cycle({i: n for i, n in discovery.scan().items() if i == ns.inode})  # this namespace only
        before = bpf_programs()
        runtime = ProbeRuntime(parse({"metrics": {"probes": [{"name": "udp"}]}}, "t", environ={}).probes)
        runtime.start(cycle)
        try:
            changes = runtime.apply(parse({"metrics": {"probes": [{"name": "udp"}, {"name": "flow"}]}}, "t", environ={}).probes)
            assert changes.added == ["flow"] and not changes.failed, changes
            runtime.collect(cycle)  # flow attaches to the cycle's namespaces
            assert "bpf" in tc_filters(ns.name, dev)
            assert bpf_programs() > before
            changes = runtime.apply(parse({"metrics": {"probes": [{"name": "udp"}]}}, "t", environ={}).probes)
            assert changes.removed == ["flow"]
            assert tc_filters(ns.name, dev) == ""
            qdiscs = subprocess.run(["ip", "netns", "exec", ns.name, "tc", "qdisc", "show", "dev", dev],
                                    capture_output=True, text=True, check=True).stdout
            assert "clsact" not in qdiscs
            wait_for(lambda: bpf_programs() == before, 5)  # freed after an RCU grace period
        finally:
            runtime.stop()
            discovery.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stderr_line_with(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> str:
    """The first line of the process's stderr that holds text, read without blocking past timeout."""
    deadline, seen = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                if text in line:
                    return line
    raise AssertionError(f"no {text!r} on stderr within {timeout}s:\n{seen.decode(errors='replace')[-2000:]}")


@pytest.mark.parametrize("when", ["running", "starting"])
def test_sighup_reloads_the_agent(tmp_path, when):
    """SIGHUP to a running agent reloads; one sent while it starts is held and reloads once it runs."""
    port = free_port()
    path = tmp_path / "config.yaml"
    doc = document(tmp_path, ["udp"], address=f"127.0.0.1:{port}", reload={"watch": False})
    path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "otel_kubeskoop.cli", "run", "-c", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    changed = {**doc, "metrics": {"probes": [{"name": "udp"}, {"name": "tcp"}]}}

    def status():
        try:
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read())
        except OSError:
            return {}

    try:
        if when == "starting":
            stderr_line_with(proc, " on node ")  # logged once the config is read, before the probes start
            path.write_text(yaml.safe_dump(changed))
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: status().get("ready"), 30)
        else:
            wait_for(lambda: status().get("ready"), 30)
            path.write_text(yaml.safe_dump(changed))
            time.sleep(0.5)
            assert status()["config"]["generation"] == 1  # no watch: nothing yet
            proc.send_signal(signal.SIGHUP)
        try:  # on a busy machine a signal taken by another thread left the reload undone (cli.py)
            wait_for(lambda: status()["config"]["generation"] == 2)
        except AssertionError:
            proc.terminate()
            raise AssertionError(f"no reload: {status().get('config')}\n{proc.stderr.read().decode()[-3000:]}")
        assert status()["config"]["last_reload"]["trigger"] == "SIGHUP"
        assert sorted(p["name"] for p in status()["probes"]) == ["tcp", "udp"]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""


def resources() -> tuple[float, int, int]:
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir("/proc/self/fd")), threading.active_count()


def test_200_reloads_leave_rss_fds_threads_and_bpf_programs_where_they_were(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"
    configs = [yaml.safe_dump(document(tmp_path, probes, reload={"watch": False}))
               for probes in (["udp", "tcp"], ["udp", "packetloss"])]
    path.write_text(configs[0])
    agent = Agent(load(str(path)), metric_exporter=MemoryExporter())
    agent.start()
    try:
        for i in range(10):  # warm up: imports, caches, the pump thread
            path.write_text(configs[(i + 1) % 2])
            assert agent.reloader.reload("test") == "applied"
        rss0, fds0, threads0 = resources()
        bpf0 = bpf_programs()
        for i in range(200):
            path.write_text(configs[(i + 1) % 2])
            assert agent.reloader.reload("test") == "applied"
        rss1, fds1, threads1 = resources()
        assert (fds1, threads1) == (fds0, threads0)
        # About a thousand programs closed: the kernel frees them after RCU grace periods, which
        # took over 5 s in a CI run here. A leak would never come back to bpf0.
        wait_for(lambda: bpf_programs() == bpf0, 30)
        print(f"200 reloads: RSS {rss0:.1f} -> {rss1:.1f} MiB, fds {fds0}, threads {threads0}, BPF programs {bpf0}")
        assert rss1 - rss0 < 8, (rss0, rss1)
    finally:
        agent.stop()


def test_additional_labels_change_live_the_pod_series_go_on_under_the_new_resource(tmp_path, monkeypatch):
    uid = str(uuid.uuid4())
    path = tmp_path / "config.yaml"
    doc = document(tmp_path, ["udp"], reload={"watch": False}, nodeName="node-r", address="127.0.0.1:0")
    doc["metrics"]["additionalLabels"] = ["team=x_${labels:tier}"]
    with KubeAPIServer() as api, OTLPReceiver() as rx, netns() as a:
        with pod_cgroup(a.sleeper().pid, uid, container_id(uid, "app")):
            api.add_pod(make_pod("web-0", "shop", uid, "node-r", labels={"tier": "fe", "app": "web"}))
            monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
            doc["otlp"]["endpoint"] = rx.http_endpoint
            path.write_text(yaml.safe_dump(doc))
            agent = Agent(load(str(path)))
            try:
                agent.open()
                assert agent.pods.wait_synced(15), agent.pods.status()
                cycle(agent)
                udp_to_closed_port(a, 3)
                cycle(agent)
                (before,) = rx.points("kubeskoop.udp.noports", resource={"k8s.pod.uid": uid}, last=True)
                assert before.resource["team"] == "x_fe" and before.value == 3
                doc["metrics"]["additionalLabels"] = ["app=${labels:app}"]
                path.write_text(yaml.safe_dump(doc))
                assert agent.reloader.reload("test") == "applied"
                assert agent.reloader.last["changes"] == {"settings": ["metrics.additionalLabels"]}
                udp_to_closed_port(a, 2)
                cycle(agent)  # the old resource goes out once more, then only the new one
                rx.clear()
                cycle(agent)
                (after,) = rx.points("kubeskoop.udp.noports", resource={"k8s.pod.uid": uid}, last=True)
                assert after.resource["app"] == "web" and "team" not in after.resource
                assert after.value == 5 and after.start_time_unix_nano == before.start_time_unix_nano
                agent.events.emit(Event("kubeskoop.test.synthetic", "TEST", a.inode, ()))
                agent.events.flush()
                rx.wait_log_requests(1)
                (record,) = rx.log_records("kubeskoop.test.synthetic")
                assert record.resource["app"] == "web" and "team" not in record.resource
            finally:
                agent.stop()


def test_bpf_stats_turned_on_and_off_live():
    runtime = ProbeRuntime(parse({"metrics": {"probes": [{"name": "tcpreset"}]}}, "t", environ={}).probes)
    runtime.start(Cycle())

    def runs() -> dict[str, int]:
        return {dict(s.attributes)["kubeskoop.bpf.program"]: s.value
                for s in runtime.self_samples() if s.instrument is I.AGENT_BPF_RUNS}

    try:
        assert runs() == {}
        assert runtime.set_bpf_stats(True) == ""  # what a reload turning bpfStats.enabled on does
        with netns() as ns:
            tcp_refused(ns, 5)
        counted = runs()
        assert counted and max(v for name, v in counted.items() if "receive" in name) >= 5, counted
        assert runtime.set_bpf_stats(False) == ""
        assert runs() == {}
    finally:
        runtime.stop()
