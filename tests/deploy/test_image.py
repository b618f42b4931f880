# SPDX-License-Identifier: Apache-2.0
"""The image `make image` builds from the Dockerfile: what is in it, and the agent running from it.

`podman run` cannot run here (crun cannot set rlimits on these machines), so the image is mounted
(`buildah from` + `buildah mount`) and the agent started in that root with `chroot`, with the
mounts, network namespace, capabilities and read-only root of the Helm chart's pod
(tests/deploy/podlike.py), and the chart's own config plus an OTLP endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.chart import agent_container, chart_config, one, render
from tests.deploy.podlike import PodlikeAgent, in_netns
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, udp_to_closed_port

require_root()
pytestmark = [pytest.mark.privileged]

# `make test` builds it first (`make image`) and passes its name.
IMAGE = os.environ.get("OKP_IMAGE", "localhost/otel-kubeskoop:0.1.0")
INODE = "kubeskoop.netns.inode"


def buildah(*args: str) -> str:
    assert shutil.which("buildah"), "buildah is installed by `make deploy-packages` (make test does)"
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[Path, dict[str, str]]]:
    """The image's root filesystem, mounted, and its environment (ENV)."""
    config = json.loads(buildah("inspect", "--type", "image", IMAGE))
    env = dict(item.split("=", 1) for item in config["OCIv1"]["config"]["Env"])
    container = buildah("from", "--pull-never", IMAGE)
    try:
        yield Path(buildah("mount", container)), env
    finally:
        buildah("umount", container)
        buildah("rm", container)


def test_runtime_stage_has_python_libbpf_and_the_agent_but_no_compiler(image):
    root, env = image
    assert (root / "usr/bin/python3.11").exists()
    assert list((root / "usr/lib/x86_64-linux-gnu").glob("libbpf.so.1*"))
    compilers = [p.name for d in ("usr/bin", "usr/local/bin") for p in (root / d).glob("*")
                 if re.fullmatch(r"(gcc|cc|c\+\+|g\+\+|clang|cpp|ld|as)(-[\d.]+)?", p.name)]
    assert compilers == []
    site = next((root / "opt/otel-kubeskoop/lib").glob("python3.*/site-packages"))
    objects = {p.name for p in (site / "otel_kubeskoop/bpf/objects").glob("*.bpf.o")}
    assert {"datapath.bpf.o", "flow.bpf.o", "selftest.bpf.o"} <= objects
    assert not (site / "pip").exists(), "pip is removed from the runtime stage"
    assert env["PATH"].startswith("/opt/otel-kubeskoop/bin")


def test_agent_runs_from_the_image_as_the_chart_runs_it(image, tmp_path):
    root, image_env = image
    objects = render()
    caps = [f"CAP_{c}" for c in agent_container(objects)["securityContext"]["capabilities"]["add"]]
    config = chart_config(objects)
    with netns() as pod_net, netns() as a:
        a.sleeper()
        rx = OTLPReceiver()
        in_netns(pod_net.path, rx.start)
        config["otlp"] = {"endpoint": rx.http_endpoint, "interval": 1}
        agent = PodlikeAgent(tmp_path, pod_net.path, caps, config, root=root, image_env=image_env)
        try:
            status = agent.wait_cycles(2)
            states = {(p["name"], p["kind"]): p["state"] for p in status["probes"]}
            configured = {(p["name"], "metrics") for p in config["metrics"]["probes"]} | {
                (p["name"], "events") for p in config["event"]["probes"]}
            assert set(states) == configured
            assert set(states.values()) == {"running"}, states
            # real data from a namespace of this node, over OTLP and on the compat endpoint
            rx.wait_for(lambda: rx.value("kubeskoop.udp.noports", resource={INODE: a.inode}) == 0, timeout=20)
            udp_to_closed_port(a, 7)
            rx.wait_for(lambda: rx.value("kubeskoop.udp.noports", resource={INODE: a.inode}) == 7, timeout=20)
            code, body = agent.get("/metrics")
            assert code == 200
            (host,) = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples
                       if s.name == "kubeskoop_netdev_rxbytes" and s.labels["k8s_pod"] == ""]
            assert host.labels["k8s_node"] == "podlike-node" and host.value > 0
            rss = _vm_hwm_kib(agent.proc.pid)
            started = time.monotonic()
            assert agent.close() == 0, agent.logs()
            stop_seconds = time.monotonic() - started
        finally:
            agent.close()
            rx.stop()
    assert "Read-only file system" not in agent.logs()
    print(f"image agent: peak RSS {rss / 1024:.1f} MiB, stopped {stop_seconds:.2f} s after SIGTERM")
    limit = int(agent_container(objects)["resources"]["limits"]["memory"].removesuffix("Mi")) * 1024
    assert rss < limit / 2, f"peak RSS {rss} KiB leaves less than half the chart's memory limit free"
    grace = one(objects, "DaemonSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert stop_seconds < grace / 2, f"stop took {stop_seconds:.1f} s against a grace period of {grace} s"


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
