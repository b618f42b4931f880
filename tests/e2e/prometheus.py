# SPDX-License-Identifier: Apache-2.0
"""A real Prometheus (Debian's `prometheus`, installed by `make setup`) on loopback, scraping one
target, and its HTTP query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.agentproc import free_port


class Prometheus:
    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._procs: list[subprocess.Popen[bytes]] = []
        self.port = 0

    def start(self, target: str, scrape_interval: str = "1s") -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "Debian package `prometheus` is installed by `make setup`"
        self.port = free_port()
        config = self._tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "kubeskoop", "static_configs": [{"targets": [target]}]}],
        }))
        log = open(self._tmp / "prometheus.log", "wb")  # noqa: SIM115
        self._procs.append(subprocess.Popen([
            binary, f"--config.file={config}", f"--storage.tsdb.path={self._tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ], stdout=log, stderr=log))
        return self

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
            proc.wait(20)

    def _get(self, path: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?" + urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        return self._get("/api/v1/query", **params)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("/api/v1/query_range", query=promql, start=start, end=end, step=step)["result"]

    def label_values(self, label: str, match: str = '{job="kubeskoop"}') -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", **{"match[]": match})


def eventually(fn, timeout: float = 30.0):
    """``fn()`` once it is truthy, polling; fails after ``timeout`` seconds with the last result."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:  # Prometheus still starting
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s; last: {last!r}")
