# SPDX-License-Identifier: Apache-2.0
"""A running agent process for the live-view tests (``watch``, ``top``): two throw-away network
namespaces, one made a pod (its first process in a kubelet-shaped cgroup, the pod served by the
Kubernetes API stand-in), the other a plain named namespace; a real OTLP receiver; the agent's
event stream on a socket of the test's own. Everything is undone on exit, even on failure."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.agentproc import CLI, AgentProcess
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import TestNetns, netns
from tests.privileged.podutil import pod_cgroup

NODE = "node-live"
POD_NAMESPACE = "shop"
POD_NAME = "web-1"


@dataclass
class LiveAgent:
    agent: AgentProcess
    rx: OTLPReceiver
    pod: TestNetns  # the namespace of pod shop/web-1
    plain: TestNetns  # a namespace no pod is known for
    socket: str

    def cli(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """``otel-kubeskoop ARGS --socket <the agent's>``."""
        return subprocess.Popen([CLI, *args, "--socket", self.socket], **kwargs)


@contextlib.contextmanager
def live_agent(tmp_path: Path, metrics: list[str], events: list[str]) -> Iterator[LiveAgent]:
    """The agent with probes ``metrics`` and ``events`` at the 1 s interval, ready, with the pod
    known to it."""
    uid = str(uuid.uuid4())
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(KubeAPIServer())
        rx = stack.enter_context(OTLPReceiver())
        pod = stack.enter_context(netns())
        plain = stack.enter_context(netns())
        plain.sleeper()
        stack.enter_context(pod_cgroup(pod.sleeper().pid, uid, container_id(uid, "app")))
        api.add_pod(make_pod(POD_NAME, POD_NAMESPACE, uid, NODE))
        sock = str(tmp_path / "events.sock")
        config = {
            "nodeName": NODE,
            "metrics": {"probes": [{"name": n} for n in metrics]},
            "event": {"probes": [{"name": n} for n in events]},
            "otlp": {"endpoint": rx.http_endpoint, "timeout": 5},
            "eventStream": {"path": sock},
            "reload": {"watch": False},
        }
        env = {"KUBECONFIG": api.write_kubeconfig(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}
        agent = AgentProcess(tmp_path, env, config)
        stack.callback(agent.close)
        agent.wait_ready()
        rx.wait_for(lambda: any(r.get("k8s.pod.uid") == uid and r.get("kubeskoop.netns.inode") == pod.inode
                                for r in rx.resources()), timeout=20, description="the pod's resource")
        yield LiveAgent(agent, rx, pod, plain, sock)


@dataclass
class Lines:
    """A process's stdout, line by line as it comes, each with its arrival time (a reader thread)."""

    proc: subprocess.Popen[bytes]
    got: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.got.append((time.monotonic(), raw.decode().rstrip("\n")))

    def lines(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.got)

    def wait(self, n: int, timeout: float) -> list[tuple[float, str]]:
        """The first ``n`` lines, within ``timeout`` seconds (else an error showing what came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines()
            if len(got) >= n:
                return got[:n]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{n} lines not within {timeout}s (exit {self.proc.poll()}): {self.lines()}")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C: the command's exit status once it has ended."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        return code
