# SPDX-License-Identifier: Apache-2.0
"""Pod churn: create and delete a namespace+pod N times while the agent collects.

Each iteration starts a process in a new network namespace (``unshare --net``), puts it in a
kubelet-shaped pod cgroup, adds the pod to the API stand-in, runs a cycle, then kills the process
and deletes the pod, and runs two more cycles (the final export, then the release). Used by
``tests/privileged/test_churn.py`` (asserts) and ``bench/churn.py`` (records RSS).
"""

from __future__ import annotations

import gc
import os
import subprocess
import time
import uuid
from dataclasses import dataclass

from otel_kubeskoop.agent import Agent
from tests.helpers import cycle
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.privileged.podutil import pod_cgroup


class DiscardingExporter:
    """Serializes each request as the OTLP/HTTP exporter would, keeps nothing."""

    def __init__(self) -> None:
        self.requests = 0

    def export_request(self, request, timeout=None) -> bool:
        request.SerializeToString()
        self.requests += 1
        return True

    def shutdown(self) -> None:
        pass


@dataclass
class Footprint:
    rss_kib: int
    fds: int
    resources: int  # pipeline resources
    agent_resources: int
    owners: int
    cgroup_cache: int
    namespaces: int
    pods: int


def footprint(agent: Agent) -> Footprint:
    gc.collect()
    with open("/proc/self/status") as f:
        rss = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    return Footprint(
        rss_kib=rss, fds=len(os.listdir("/proc/self/fd")),
        resources=len(agent.pipeline) if agent.pipeline is not None else 0,
        agent_resources=len(agent.directory), owners=len(agent.directory.owners),
        cgroup_cache=len(agent.directory.attributor._uids), namespaces=len(agent.snapshot.namespaces),
        pods=len(agent.pods.pods()))


def wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


def churn(agent: Agent, api: KubeAPIServer, node: str, iterations: int) -> int:
    """Returns how many iterations saw the pod attributed (by the pod's own resource)."""
    attributed = 0
    for i in range(iterations):
        uid = str(uuid.uuid4())
        name = f"churn-{i}"
        proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        try:
            wait(lambda: os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"))
            inode = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
            with pod_cgroup(proc.pid, uid, container_id(uid, "app")):
                api.add_pod(make_pod(name, "churn", uid, node))
                wait(lambda: agent.pods.get(uid) is not None)
                cycle(agent)
                owner = agent.directory.owners.get(inode)
                attributed += owner is not None and owner.pod is not None and owner.pod.name == name
                proc.kill()
                proc.wait()
                api.delete_pod("churn", name)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait(lambda: agent.pods.get(uid) is None)
        cycle(agent)  # the namespace is gone: its resource goes out once more
        cycle(agent)  # and is released
    return attributed
