# SPDX-License-Identifier: Apache-2.0
"""Wiring: config -> namespaces -> probes -> OTLP pipeline and event path -> HTTP endpoints.

One agent thread runs the cycle every interval: scan namespaces, collect every probe, hand the
samples to the metric pipeline, make one export call. The HTTP server reads a status snapshot the
cycle leaves behind, so it never touches probe state directly.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__, health, limits
from otel_kubeskoop.config import Config
from otel_kubeskoop.probe import Event, Kind, Sample
from otel_kubeskoop.probes import ALL_PROBES
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.server import HTTPServer, json_response
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.telemetry import exporters
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.telemetry.events import EventEmitter, LineSink, line_sink
from otel_kubeskoop.telemetry.compat import CompatEndpoint, CompatLabels
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from otel_kubeskoop.telemetry.resources import Identity, netns_resource, node_resource, pod_resource, pod_uid_resource
from otel_kubeskoop.topology.attribution import NOBODY, Attributor, Owner
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.pods import PodCache, PodInfo, render_additional_labels

log = logging.getLogger(__name__)

NODE = "node"  # the pipeline key of the node resource (host namespace and node-scope data)
POD = "pod"  # (POD, uid): the key of a pod without a namespace of its own (hostNetwork)


class Agent:
    def __init__(self, config: Config, *, metric_exporter: Any = None, log_exporters: list[Any] | None = None) -> None:
        """Exporters default to what the config asks for; tests pass real SDK exporters of their own."""
        self.config = config
        self.identity = Identity(config.node_name, socket.gethostname(), config.cluster_name)
        # As many namespaces as the descriptor limit holds (raised to the hard one by `run`).
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.discovery = NetnsDiscovery(proc_root=config.raw.proc_root, netns_dir=config.raw.netns_dir,
                                        max_namespaces=limits.namespace_cap(self.fd_limit, config.probes))
        self.runtime = ProbeRuntime(config.probes, proc_root=config.raw.proc_root, emit=self.emit,
                                    bpf_stats=config.raw.bpf_stats.enabled, cgroup_root=config.raw.cgroup_root,
                                    sys_root=config.raw.sys_root)
        # Pod metadata from the Kubernetes API (in-cluster, or KUBECONFIG); without API access the
        # cache is disabled, says so once, and namespaces are reported by inode.
        self.pods = PodCache(config.node_name)
        self.attributor = Attributor(self.pods)
        self._owners: dict[int, Owner] = {}
        self._pod_inodes: dict[str, int] = {}  # pod uid -> the namespace it owns
        # key -> (what the resource was built from, the resource, rendered additionalLabels)
        self._resources: dict[Hashable, tuple[tuple[Any, ...], Resource, dict[str, str]]] = {}
        self._host_inode: int | None = None
        self.compat = (CompatEndpoint(config.node_name, [name for name, _ in config.additional_labels])
                       if config.raw.compat.enabled and config.address else None)
        if metric_exporter is None and config.otlp.enabled:
            metric_exporter = exporters.metric_exporter(config.otlp)
        if log_exporters is None:
            log_exporters = [exporters.log_exporter(config.otlp)] if config.otlp.enabled else []
        line_sinks: list[LineSink] = []
        for sink in config.sinks:
            if sink.name == "loki" and sink.addr:
                log_exporters.append(exporters.loki_log_exporter(sink.addr))
            else:
                line_sinks.append(line_sink(sink.name, sink.path))
        if not config.sinks and not config.otlp.enabled:
            line_sinks.append(line_sink("stdout"))  # one machine, no backend: show events at once
        self.pipeline = MetricPipeline(metric_exporter, self.resource) if metric_exporter is not None else None
        self.events = EventEmitter(self._event_resource, log_exporters, line_sinks)
        self.server = HTTPServer(config.address, self._routes()) if config.address else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self.cycles = 0
        self.export_failures = 0
        self.last_cycle_end: float | None = None
        self.last_cycle_seconds: float | None = None
        self.problems: list[str] = []  # why not ready although running (health.py)

    # Resources ---------------------------------------------------------------------------------

    def _signature(self, key: Hashable) -> tuple[Any, ...]:
        if key == NODE:
            return (NODE, self._host_inode)
        if isinstance(key, tuple):
            pod = self.attributor.pod(key[1])
            return (key[1], pod.resource_version if pod else None)
        owner = self._owners.get(key, NOBODY)  # type: ignore[call-overload]
        ns = self.runtime.cycle.namespaces.get(key)  # type: ignore[call-overload]
        pod = owner.pod
        return (owner.pod_uid, pod.resource_version if pod else None, ns.name if ns is not None else None)

    def _build(self, key: Hashable) -> tuple[tuple[Any, ...], Resource, dict[str, str]]:
        signature = self._signature(key)
        if key == NODE:
            return signature, node_resource(self.identity, self._host_inode), self._extra(None)
        if isinstance(key, tuple):
            pod = self.attributor.pod(key[1])
            if pod is not None:
                extra = self._extra(pod)
                return signature, pod_resource(self.identity, None, pod, extra), extra
            return signature, pod_uid_resource(self.identity, key[1]), {}
        owner = self._owners.get(key, NOBODY)  # type: ignore[call-overload]
        if owner.pod is not None:
            extra = self._extra(owner.pod)
            return signature, pod_resource(self.identity, int(key), owner.pod, extra), extra  # type: ignore[call-overload]
        ns = self.runtime.cycle.namespaces.get(key)  # type: ignore[call-overload]
        name = ns.name if ns is not None else None
        return signature, netns_resource(self.identity, int(key), name, owner.pod_uid), {}  # type: ignore[call-overload]

    def _extra(self, pod: PodInfo | None) -> dict[str, str]:
        return render_additional_labels(self.config.additional_labels, pod) if self.config.additional_labels else {}

    def resource(self, key: Hashable) -> Resource:
        entry = self._resources.get(key)
        if entry is None:
            entry = self._resources[key] = self._build(key)
        return entry[1]

    def key_for(self, inode: int | None) -> Hashable:
        return NODE if inode is None or inode == self._host_inode else inode

    def sample_key(self, sample: Sample) -> Hashable:
        """Where a sample goes: its namespace's resource, or for a pod-scope sample (``pod_uid``)
        its pod's: the pod's own namespace when it has one, else a resource of the pod alone (a
        hostNetwork pod shares the node's namespace but its processes are its own)."""
        uid = sample.pod_uid
        if uid is None:
            return self.key_for(sample.netns)
        inode = self._pod_inodes.get(uid)
        return inode if inode is not None else (POD, uid)

    def _attribute(self) -> None:
        """Resolve every namespace's owner; a namespace whose resource changed (its pod's metadata
        arrived, changed or went away) is re-attributed: the old resource is exported once more."""
        self._owners = self.attributor.resolve(self.runtime.cycle.namespaces)
        self._pod_inodes = {owner.pod_uid: inode for inode, owner in self._owners.items()
                            if owner.pod_uid and not owner.host}
        for key in list(self._resources):
            old_signature, old, _ = self._resources[key]
            if self._signature(key) == old_signature:
                continue
            entry = self._resources[key] = self._build(key)
            if entry[1].attributes != old.attributes and self.pipeline is not None:
                self.pipeline.reattribute(key)

    def compat_labels(self, key: Hashable) -> CompatLabels | None:
        """Upstream's entity labels for a resource key: empty pod and namespace for the node; None
        for a namespace no pod owns (upstream leaves those out)."""
        if key == NODE:
            return CompatLabels(extra=tuple(self._resources[NODE][2].items()) if NODE in self._resources else ())
        pod = self.attributor.pod(key[1]) if isinstance(key, tuple) else self._owners.get(key, NOBODY).pod  # type: ignore[call-overload]
        if pod is None:
            return None
        self.resource(key)
        return CompatLabels(pod.namespace, pod.name, tuple(self._resources[key][2].items()))

    def _event_resource(self, inode: int | None) -> Resource:
        return self.resource(self.key_for(inode))

    def emit(self, event: Event) -> None:
        self.events.emit(event)

    # Lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Scan namespaces, start the probes and serve HTTP; cycles are then run by :meth:`cycle`."""
        self.pods.start()
        self._scan()
        self.runtime.start()
        self._snapshot()
        if self.server is not None:
            self.server.start()

    def start(self) -> None:
        """:meth:`open`, then run :meth:`cycle` every interval on the agent thread."""
        self.open()
        self._thread = threading.Thread(target=self._loop, name="kubeskoop-agent", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.config.interval
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.cycle()
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a cycle took longer than the interval: skip, don't pile up
                skipped = int((now - next_at) // interval) + 1
                log.warning("collection is %d interval(s) behind; skipping ahead", skipped)
                next_at += skipped * interval
            self._stop.wait(next_at - now)

    def stop(self) -> None:
        """Stop the cycle, make a final export, release everything. Idempotent."""
        if self._stop.is_set() and self._thread is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.cycles:
            self.cycle()  # the final export, so counts since the last interval are not lost
        self.runtime.stop()
        self.pods.stop()
        if self.pipeline is not None:
            self.pipeline.shutdown()
        self.events.shutdown()
        self.discovery.close()
        if self.server is not None:
            self.server.stop()

    def request_stop(self) -> None:
        """Ask the cycle to end (safe from a signal handler); :meth:`stop` then releases everything."""
        self._stop.set()

    def wait(self) -> None:
        self._stop.wait()

    # The cycle ---------------------------------------------------------------------------------

    def _scan(self) -> None:
        namespaces = self.discovery.scan()
        host = next((ns for ns in namespaces.values() if ns.is_host), None)
        if host is not None and host.inode != self._host_inode:
            self._host_inode = host.inode
            self._resources.pop(NODE, None)
        cycle = self.runtime.cycle
        cycle.namespaces = namespaces
        cycle.host = host
        cycle.cache.clear()
        for inode in self.discovery.gone_since_last_scan:
            self._resources.pop(inode, None)
        self._attribute()

    def cycle(self) -> None:
        t0 = time.perf_counter()
        try:
            self._scan()
            samples = self.runtime.collect()
        except Exception as exc:  # discovery itself failed: keep the agent alive, report it
            log.error("collection cycle failed: %s: %s", type(exc).__name__, exc)
            samples = self.runtime.self_samples()
        namespaces = self.runtime.cycle.namespaces
        samples.append(Sample(I.AGENT_NETNS_COUNT, len(namespaces)))
        samples.append(Sample(I.AGENT_NETNS_LEFT_OUT, self.discovery.left_out))
        if self.last_cycle_seconds is not None:
            samples.append(Sample(I.AGENT_CYCLE_DURATION, self.last_cycle_seconds))
        samples.append(Sample(I.AGENT_EXPORT_FAILURES, self.export_failures, None, ((A.SIGNAL, "metrics"),)))
        samples += self.events.samples()
        groups: dict[Hashable, list[Sample]] = defaultdict(list)
        for s in samples:
            groups[self.sample_key(s)].append(s)
        pod_keys = [key for key in groups if isinstance(key, tuple)]
        for key in [k for k in self._resources if isinstance(k, tuple) and k not in groups]:
            del self._resources[key]  # a pod-keyed resource whose pod has no processes any more
        if self.pipeline is not None:
            live = [NODE, *(inode for inode in namespaces if inode != self._host_inode), *pod_keys]
            self.pipeline.update(groups, live)
            if not self.pipeline.export():
                self.export_failures += 1
        if self.compat is not None:
            self.compat.update(groups, self.compat_labels)
        self.cycles += 1
        self.last_cycle_seconds = time.perf_counter() - t0
        self.last_cycle_end = time.monotonic()
        self._snapshot()

    # Status ------------------------------------------------------------------------------------

    def _snapshot(self) -> None:
        probes = self.runtime.status()
        open_fds = limits.open_fds()
        namespaces = self.runtime.cycle.namespaces
        self.problems = health.problems(
            denied=self.runtime.denied(), left_out=self.discovery.left_out,
            found=len(namespaces) + self.discovery.left_out, open_fds=open_fds,
            soft_limit=self.fd_limit)
        status = {
            "version": __version__,
            "node": self.config.node_name,
            "ready": self.cycles > 0 and not self.problems,
            "problems": self.problems,
            "limits": {"file_descriptors_open": open_fds, "file_descriptors_soft_limit": self.fd_limit,
                       "namespaces_max": self.discovery.max_namespaces,
                       "namespaces_left_out": self.discovery.left_out},
            "cycles": self.cycles,
            "interval_seconds": self.config.interval,
            "last_cycle_seconds": self.last_cycle_seconds,
            "probes": probes,
            "namespaces": [self._namespace_status(ns) for ns in self.runtime.cycle.namespaces.values()],
            "kubernetes": self.pods.status(),
            # Their namespace-level data is the node's (they share its namespace).
            "host_network_pods": sorted(f"{p.namespace}/{p.name}" for p in self.attributor.host_network_pods()),
            "otlp": {
                "enabled": self.pipeline is not None,
                "protocol": self.config.otlp.protocol,
                "export_failures": self.export_failures,
            },
            "events_emitted": self.events.emitted,
            "http": self.server.status() if self.server is not None else None,
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
        with self._lock:
            self._status = status

    def _namespace_status(self, ns: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"inode": ns.inode, "pid": ns.pid, "name": ns.name, "host": ns.is_host}
        owner = self._owners.get(ns.inode, NOBODY)
        if owner.pod is not None:
            out["pod"] = f"{owner.pod.namespace}/{owner.pod.name}"
        if owner.pod_uid:
            out["pod_uid"] = owner.pod_uid
        return out

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status

    def healthy(self) -> bool:
        """The cycle thread is making progress: a cycle ended within three intervals."""
        if self._thread is None or not self._thread.is_alive():
            return False
        if self.last_cycle_end is None:
            return True  # the first cycle is still running
        return time.monotonic() - self.last_cycle_end < 3 * self.config.interval + 30

    def _readyz(self) -> tuple[int, str, bytes]:
        if self.cycles == 0:
            return 503, "text/plain", b"first collection not finished\n"
        if self.problems:
            return 503, "text/plain", ("not ready: " + "; ".join(self.problems) + "\n").encode()
        return 200, "text/plain", b"ready\n"

    def _routes(self) -> dict[str, Any]:
        routes = {
            "/status": lambda: json_response(200, self.status()),
            "/healthz": lambda: (200, "text/plain", b"ok\n") if self.healthy() else (503, "text/plain", b"collection stalled\n"),
            "/readyz": self._readyz,
        }
        if self.compat is not None:
            routes["/metrics"] = self.compat.render
        return routes
