# SPDX-License-Identifier: Apache-2.0
"""The agent's HTTP routes: ``/status`` (a document the cycle leaves behind, so a request never
touches probe state), ``/healthz``, ``/readyz``, and the compat ``/metrics``."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from otel_kubeskoop import __version__, health, limits
from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import ALL_PROBES
from otel_kubeskoop.server import Route, json_response

if TYPE_CHECKING:
    from otel_kubeskoop.agent import Agent
    from otel_kubeskoop.topology.netns import Netns


class StatusBoard:
    """The last status document, written by the cycle thread and read by the HTTP threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._document: dict[str, Any] = {}

    def publish(self, agent: Agent) -> None:
        document = status_document(agent)
        with self._lock:
            self._document = document

    def read(self) -> dict[str, Any]:
        with self._lock:
            return self._document


def status_document(agent: Agent) -> dict[str, Any]:
    probes = agent.runtime.status()
    open_fds, left_out = limits.open_fds(), agent.discovery.left_out
    refused = agent.discovery.refused
    problems = health.problems(denied=agent.runtime.denied(), left_out=left_out,
                               found=len(agent.snapshot.namespaces) + left_out, open_fds=open_fds,
                               soft_limit=agent.fd_limit, scan_refused=refused,
                               ptrace=not refused or health.can_ptrace())
    return {
        "version": __version__,
        "node": agent.config.node_name,
        "ready": agent.cycles > 0 and not problems,
        "problems": problems,  # why not ready although collecting (otel_kubeskoop/health.py)
        "limits": {"file_descriptors_open": open_fds, "file_descriptors_soft_limit": agent.fd_limit,
                   "namespaces_max": agent.discovery.max_namespaces, "namespaces_left_out": left_out},
        "cycles": agent.cycles,
        "interval_seconds": agent.config.interval,
        "last_cycle_seconds": agent.last_cycle_seconds,
        "probes": probes,
        "namespaces": [namespace_status(agent, ns) for ns in agent.snapshot.namespaces.values()],
        "kubernetes": agent.pods.status(),
        # Their namespace-level data is the node's (they share its namespace).
        "host_network_pods": sorted(f"{p.namespace}/{p.name}" for p in agent.directory.attributor.host_network_pods()),
        "otlp": {
            "enabled": agent.pipeline is not None,
            "protocol": agent.config.otlp.protocol,
            "export_failures": agent.export_failures,
        },
        "events_emitted": agent.events.emitted,
        "http": agent.server.status() if agent.server is not None else None,
        # Upstream KubeSkoop's /status keys, so existing tooling keeps working.
        "inuse_probes": {
            "metrics": [{"name": p["name"], "state": p["state"]} for p in probes if p["kind"] == "metrics"],
            "event": [{"name": p["name"], "state": p["state"]} for p in probes if p["kind"] == "events"],
        },
        "available_probes": {
            "metrics": [s.name for s in ALL_PROBES if Kind.METRICS in s.kinds],
            "event": [s.name for s in ALL_PROBES if Kind.EVENTS in s.kinds],
        },
    }


def namespace_status(agent: Agent, ns: Netns) -> dict[str, Any]:
    out: dict[str, Any] = {"inode": ns.inode, "pid": ns.pid, "name": ns.name, "host": ns.is_host}
    owner = agent.directory.owner(ns.inode)
    if owner.pod is not None:
        out["pod"] = f"{owner.pod.namespace}/{owner.pod.name}"
    if owner.pod_uid:
        out["pod_uid"] = owner.pod_uid
    return out


def healthy(agent: Agent) -> bool:
    """The cycle thread is making progress: a cycle ended within three intervals."""
    if not agent.running():
        return False
    if agent.last_cycle_end is None:
        return True  # the first cycle is still running
    return time.monotonic() - agent.last_cycle_end < 3 * agent.config.interval + 30


def readyz(agent: Agent) -> tuple[int, str, bytes]:
    if agent.cycles == 0:
        return 503, "text/plain", b"first collection not finished\n"
    problems = agent.status().get("problems")
    if problems:
        return 503, "text/plain", ("not ready: " + "; ".join(problems) + "\n").encode()
    return 200, "text/plain", b"ready\n"


def routes(agent: Agent) -> dict[str, Route]:
    out: dict[str, Route] = {
        "/status": lambda: json_response(200, agent.status()),
        "/healthz": lambda: (200, "text/plain", b"ok\n") if healthy(agent) else (503, "text/plain", b"collection stalled\n"),
        "/readyz": lambda: readyz(agent),
    }
    if agent.compat is not None:
        out["/metrics"] = agent.compat.render
    return out
