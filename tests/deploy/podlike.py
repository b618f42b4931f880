# SPDX-License-Identifier: Apache-2.0
"""Run the agent the way the Helm chart runs it, without a cluster.

The chart's pod has its own network namespace (no hostNetwork), the host's pid namespace, the
host's ``/proc``, ``/sys`` and ``/run/netns``, and only the capabilities listed in its values,
with ``no_new_privs`` set (``allowPrivilegeEscalation: false``). Here that is: a test network
namespace entered with ``nsenter --net`` (which, unlike ``ip netns exec``, leaves the mounts
alone), then ``setpriv`` limiting the bounding, inheritable and ambient sets to the chart's
capabilities. As uid 0, ``execve`` gives a process its bounding set as permitted and effective
set, as the container runtime does.

The test's servers (an OTLP receiver) and its HTTP requests to the agent run inside that
namespace too: a thread enters it with ``setns(2)`` and creates the sockets there.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

CLONE_NEWNET = 0x40000000
CLI = str(Path(sys.executable).parent / "otel-kubeskoop")
T = TypeVar("T")


def in_netns(path: str, fn: Callable[[], T], timeout: float = 30) -> T:
    """``fn()`` called on a new thread that has entered the network namespace at ``path``."""
    out: dict[str, Any] = {}

    def work() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({path})")
            out["value"] = fn()
        except BaseException as exc:  # handed to the caller
            out["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=work, name="test-in-netns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"call inside {path} did not return within {timeout}s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def setpriv_argv(caps: Iterable[str]) -> list[str]:
    """``setpriv`` limiting every capability set to ``caps`` (``CAP_X`` names), no_new_privs on."""
    names = ",".join(f"+{c.removeprefix('CAP_').lower()}" for c in sorted(caps))
    sets = f"-all,{names}" if names else "-all"
    return ["setpriv", "--no-new-privs", f"--bounding-set={sets}", f"--inh-caps={sets}",
            f"--ambient-caps={sets}", "--"]


# The image's root, mounted as the chart mounts the pod's filesystems: the root read-only, the
# host's /proc and /sys at the config's procRoot and sysRoot, /run/netns, the config as a
# directory, a tmpfs at /tmp. In a mount namespace of its own (slave: host mounts reach it, its
# mounts stay inside), so nothing is left behind.
_IMAGE_MOUNTS = """set -e
R="$1"; CONFIG_DIR="$2"; shift 2
mkdir -p "$R/host/proc" "$R/host/sys" "$R/run/netns" "$R/etc/otel-kubeskoop" "$R/tmp" "$R/proc" "$R/sys"
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount --rbind /proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /proc "$R/host/proc"
mount --rbind /sys "$R/host/sys"
mount --rbind /run/netns "$R/run/netns"
mount --bind "$CONFIG_DIR" "$R/etc/otel-kubeskoop"
mount -o remount,bind,ro "$R/etc/otel-kubeskoop"
mount -t tmpfs -o size=16m tmpfs "$R/tmp"
exec "$@"
"""


class PodlikeAgent:
    """The agent started in ``netns_path`` with exactly ``caps`` (``None``: as the caller, every
    capability), with ``config``. By default the console script of this virtualenv; with
    ``root``, the image mounted there (``image_env`` is the image's ENV), chrooted into."""

    def __init__(self, tmp: Path, netns_path: str, caps: Iterable[str] | None, config: dict[str, Any],
                 env: dict[str, str] | None = None, root: Path | None = None,
                 image_env: dict[str, str] | None = None) -> None:
        assert shutil.which("setpriv") and shutil.which("nsenter"), "util-linux's setpriv and nsenter"
        self.netns_path = netns_path
        self._logs = ""
        self.port = int(str(config["address"]).rsplit(":", 1)[1])
        n = len(list(tmp.glob("agent-*.log")))
        config_dir = tmp / f"config-{n}"
        config_dir.mkdir()
        (config_dir / "config.yaml").write_text(yaml.safe_dump(config))
        drop = setpriv_argv(caps) if caps is not None else []
        enter = ["nsenter", f"--net={netns_path}", "--"]
        if root is None:
            argv = [*enter, *drop, CLI, "run", "-c", str(config_dir / "config.yaml")]
            base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KUBE"))}
        else:
            argv = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", _IMAGE_MOUNTS, "sh",
                    str(root), str(config_dir), *enter, "chroot", str(root), *drop,
                    "otel-kubeskoop", "run", "-c", "/etc/otel-kubeskoop/config.yaml"]
            base_env = dict(image_env or {})
        self.stderr = open(tmp / f"agent-{n}.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env={**base_env, "NODE_NAME": "podlike-node", **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)

    def get(self, path: str) -> tuple[int, bytes]:
        def fetch() -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()
        return in_netns(self.netns_path, fetch)

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return json.loads(body)

    def wait_cycles(self, cycles: int, timeout: float = 60) -> dict[str, Any]:
        """/status once the agent has run ``cycles`` collection cycles."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.logs()}")
            try:
                status = self.status()
                if status["cycles"] >= cycles:
                    return status
                last = status["cycles"]
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"agent not at {cycles} cycles within {timeout}s (last: {last!r}): {self.logs()}")

    def logs(self) -> str:
        if self.stderr.closed:
            return self._logs
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.stderr.closed:
            self._logs = self.logs()
            self.stderr.close()
        return self.proc.returncode
