# SPDX-License-Identifier: Apache-2.0
"""The agent's HTTP routes: ``/status`` (a document the cycle leaves behind, so a request never
touches probe state), ``/healthz``, ``/readyz``, and the compat ``/metrics``.

Health is about collection, never the backend (export runs on its own thread): ``/healthz`` fails
when no cycle has ended within ``LIVENESS_INTERVALS`` intervals plus ``LIVENESS_SLACK_S`` (counted
from the loop's start for the first cycle), so a wedged agent is restarted; ``/readyz`` needs a
finished cycle and a live loop.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from otel_kubeskoop import __version__, health, limits
from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import ALL_PROBES
from otel_kubeskoop.server import Route, json_response

if TYPE_CHECKING:
    from otel_kubeskoop.agent_parts import AgentParts
    from otel_kubeskoop.topology.netns import Netns


class StatusBoard:
    """The last status document, written by the cycle thread and read by the HTTP threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._document: dict[str, Any] = {}

    def publish(self, agent: AgentParts) -> None:
        document = status_document(agent)
        with self._lock:
            self._document = document

    def read(self) -> dict[str, Any]:
        with self._lock:
            return self._document


def status_document(agent: AgentParts) -> dict[str, Any]:
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
        "ready": ready(agent) and not problems,
        "healthy": healthy(agent),
        "problems": problems,  # why not ready although collecting (otel_kubeskoop/health.py)
        "limits": {"file_descriptors_open": open_fds, "file_descriptors_soft_limit": agent.fd_limit,
                   "namespaces_max": agent.discovery.max_namespaces, "namespaces_left_out": left_out,
                   "overflow": agent.overflow()},
        "cycles": agent.cycles,
        "interval_seconds": agent.config.interval,
        "last_cycle_seconds": agent.last_cycle_seconds,
        "probes": probes,
        "namespaces": [namespace_status(agent, ns) for ns in agent.snapshot.namespaces.values()],
        "kubernetes": agent.pods.status(),
        "services": agent.services.status(),  # ClusterIPs naming tcprtt's and tcpconnect's peers
        # Their namespace-level data is the node's (they share its namespace).
        "host_network_pods": sorted(f"{p.namespace}/{p.name}" for p in agent.directory.attributor.host_network_pods()),
        "otlp": otlp_status(agent),
        "events_emitted": agent.events.emitted,
        "config": agent.reloader.status(),
        "events": agent.events.status(),
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


def namespace_status(agent: AgentParts, ns: Netns) -> dict[str, Any]:
    out: dict[str, Any] = {"inode": ns.inode, "pid": ns.pid, "name": ns.name, "host": ns.is_host}
    owner = agent.directory.owner(ns.inode)
    if owner.pod is not None:
        out["pod"] = f"{owner.pod.namespace}/{owner.pod.name}"
    if owner.pod_uid:
        out["pod_uid"] = owner.pod_uid
    return out


def otlp_status(agent: AgentParts) -> dict[str, Any]:
    out: dict[str, Any] = {"enabled": agent.pipeline is not None, "protocol": agent.config.otlp.protocol,
                           "export_failures": agent.export_failures}
    if agent.sender is not None:
        out.update(agent.sender.status())
    if agent.pipeline is not None:
        out["overflow"] = {"refused_last_cycle": agent.pipeline.refused, "refused_total": dict(agent.pipeline.overflow)}
    return out


LIVENESS_INTERVALS = 3
LIVENESS_SLACK_S = 10.0  # a slow namespace scan on a busy node, on top of the intervals


def healthy(agent: AgentParts) -> bool:
    """The cycle thread is making progress: a cycle ended (or, before the first, the loop started)
    within ``LIVENESS_INTERVALS`` intervals plus ``LIVENESS_SLACK_S``."""
    since = agent.last_cycle_end if agent.last_cycle_end is not None else agent.loop_started
    if not agent.running() or since is None:
        return False
    return time.monotonic() - since < LIVENESS_INTERVALS * agent.config.interval + LIVENESS_SLACK_S


def ready(agent: AgentParts) -> bool:
    return agent.cycles > 0 and healthy(agent)


def readyz(agent: AgentParts) -> tuple[int, str, bytes]:
    if not ready(agent):
        return 503, "text/plain", b"no recent collection\n"
    problems = agent.status().get("problems")
    if problems:
        return 503, "text/plain", ("not ready: " + "; ".join(problems) + "\n").encode()
    return 200, "text/plain", b"ready\n"


def routes(agent: AgentParts) -> dict[str, Route]:
    out: dict[str, Route] = {
        "/status": lambda: json_response(200, agent.status()),
        "/healthz": lambda: (200, "text/plain", b"ok\n") if healthy(agent) else (503, "text/plain", b"collection stalled\n"),
        "/readyz": lambda: readyz(agent),
    }
    if agent.config.raw.compat.enabled:  # a reload may turn it off (and on again)
        out["/metrics"] = lambda: agent.compat.render() if agent.compat is not None else (404, "text/plain", b"compat off\n")
    out["POST /-/reload"] = lambda: reload_route(agent)
    return out


def reload_route(agent: AgentParts) -> tuple[int, str, bytes]:
    """``POST /-/reload``: reload now and answer with the outcome; 403 unless ``reload.http``."""
    if not agent.config.raw.reload.http:
        return 403, "text/plain", b"reload over HTTP is off (config reload.http)\n"
    if agent.reloader.path is None:
        return 409, "text/plain", b"no config file to reload (built-in defaults)\n"
    outcome = agent.reloader.reload_and_wait("http")
    return json_response(200 if outcome.get("result") in ("applied", "partial", "unchanged") else 422, outcome)
