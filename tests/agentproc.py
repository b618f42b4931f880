# SPDX-License-Identifier: Apache-2.0
"""The agent as a process, started through the console script the README's ``make run`` uses:
its config written from a dict, its HTTP endpoints on a free loopback port, its log kept.

Every process started here is killed and reaped by :meth:`AgentProcess.close` (the tests' fixtures
call it even when the test fails)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "otel-kubeskoop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def default_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config/default.yaml").read_text())


class AgentProcess:
    """``otel-kubeskoop run`` with ``config`` (the default config if None) at ``interval``
    seconds, or with ``config_text`` as given (the interval then comes from
    ``OTEL_METRIC_EXPORT_INTERVAL`` in ``env``), serving on a free port of 127.0.0.1; ``prefix``
    goes before the command (``prlimit ...``)."""

    def __init__(self, workdir: Path, env: dict[str, str], config: dict[str, Any] | None = None,
                 interval: float = 1.0, prefix: tuple[str, ...] = (), name: str = "agent",
                 config_text: str | None = None) -> None:
        self.port = free_port()
        if config_text is None:
            config = dict(config if config is not None else default_config())
            config["address"] = f"127.0.0.1:{self.port}"
            config["otlp"] = {**config.get("otlp", {}), "interval": interval}
            config_text = yaml.safe_dump(config)
        else:
            config_text += f"\naddress: 127.0.0.1:{self.port}\n"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(config_text)
        self.stdout = open(workdir / f"{name}.stdout", "w+b")  # noqa: SIM115
        self.stderr = open(workdir / f"{name}.stderr", "w+b")  # noqa: SIM115
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen([*prefix, CLI, "run", "-c", str(self.config)],
                                     env={**clean, "NO_PROXY": "127.0.0.1", **env},
                                     stdout=self.stdout, stderr=self.stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.logs()}")
            try:
                if get(self.port, "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"agent not ready in {timeout}s: {self.logs()}")

    def logs(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"agent did not stop on SIGTERM: {self.logs()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as the kubelet does at the end of the grace period or the OOM killer does."""
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()
        self.stderr.close()
