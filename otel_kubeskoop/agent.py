# SPDX-License-Identifier: Apache-2.0
"""Wiring: config -> namespaces -> probes -> OTLP pipeline and event path -> HTTP endpoints.

One agent thread runs the cycle every interval: scan namespaces, collect every probe, hand the
samples to the metric pipeline, make one export call. The HTTP server reads a status snapshot the
cycle leaves behind, so it never touches probe state directly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.config import Config
from otel_kubeskoop.probe import Event, Kind, Sample
from otel_kubeskoop.probes import ALL_PROBES
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.server import HTTPServer, json_response
from otel_kubeskoop.telemetry import attributes as A
from otel_kubeskoop.telemetry import exporters
from otel_kubeskoop.telemetry import instruments as I
from otel_kubeskoop.telemetry.events import EventEmitter, LineSink, line_sink
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from otel_kubeskoop.telemetry.resources import Identity, netns_resource, node_resource
from otel_kubeskoop.topology.netns import NetnsDiscovery

log = logging.getLogger(__name__)

NODE = "node"  # the pipeline key of the node resource (host namespace and node-scope data)


class Agent:
    def __init__(self, config: Config, *, metric_exporter: Any = None, log_exporters: list[Any] | None = None) -> None:
        """Exporters default to what the config asks for; tests pass real SDK exporters of their own."""
        self.config = config
        self.identity = Identity(config.node_name, socket.gethostname(), config.cluster_name)
        self.discovery = NetnsDiscovery(proc_root=config.raw.proc_root, netns_dir=config.raw.netns_dir)
        self.runtime = ProbeRuntime(config.probes, proc_root=config.raw.proc_root)
        self._resources: dict[Hashable, Resource] = {}
        self._host_inode: int | None = None
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
        self.events = EventEmitter(self._event_resource, log_exporters, line_sinks, self.resource(NODE))
        self.server = HTTPServer(config.address, self._routes()) if config.address else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self.cycles = 0
        self.export_failures = 0
        self.last_cycle_end: float | None = None
        self.last_cycle_seconds: float | None = None

    # Resources ---------------------------------------------------------------------------------

    def resource(self, key: Hashable) -> Resource:
        res = self._resources.get(key)
        if res is None:
            if key == NODE:
                res = node_resource(self.identity, self._host_inode)
            else:
                ns = self.runtime.cycle.namespaces.get(key)  # type: ignore[arg-type]
                res = netns_resource(self.identity, int(key), ns.name if ns is not None else None)  # type: ignore[call-overload]
            self._resources[key] = res
        return res

    def key_for(self, inode: int | None) -> Hashable:
        return NODE if inode is None or inode == self._host_inode else inode

    def _event_resource(self, inode: int | None) -> Resource:
        return self.resource(self.key_for(inode))

    def emit(self, event: Event) -> None:
        self.events.emit(event)

    # Lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Scan namespaces, start the probes and serve HTTP; cycles are then run by :meth:`cycle`."""
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
        for inode in self.discovery.gone_since_last_scan:
            self._resources.pop(inode, None)
        cycle = self.runtime.cycle
        cycle.namespaces = namespaces
        cycle.host = host
        cycle.cache.clear()

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
        if self.last_cycle_seconds is not None:
            samples.append(Sample(I.AGENT_CYCLE_DURATION, self.last_cycle_seconds))
        samples.append(Sample(I.AGENT_EXPORT_FAILURES, self.export_failures, None, ((A.SIGNAL, "metrics"),)))
        if self.pipeline is not None:
            groups: dict[Hashable, list[Sample]] = defaultdict(list)
            for s in samples:
                groups[self.key_for(s.netns)].append(s)
            live = [NODE, *(inode for inode in namespaces if inode != self._host_inode)]
            self.pipeline.update(groups, live)
            if not self.pipeline.export():
                self.export_failures += 1
        self.cycles += 1
        self.last_cycle_seconds = time.perf_counter() - t0
        self.last_cycle_end = time.monotonic()
        self._snapshot()

    # Status ------------------------------------------------------------------------------------

    def _snapshot(self) -> None:
        probes = self.runtime.status()
        status = {
            "version": __version__,
            "node": self.config.node_name,
            "ready": self.cycles > 0,
            "cycles": self.cycles,
            "interval_seconds": self.config.interval,
            "last_cycle_seconds": self.last_cycle_seconds,
            "probes": probes,
            "namespaces": [
                {"inode": ns.inode, "pid": ns.pid, "name": ns.name, "host": ns.is_host}
                for ns in self.runtime.cycle.namespaces.values()
            ],
            "otlp": {
                "enabled": self.pipeline is not None,
                "protocol": self.config.otlp.protocol,
                "export_failures": self.export_failures,
            },
            "events_emitted": self.events.emitted,
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

    def _routes(self) -> dict[str, Any]:
        return {
            "/status": lambda: json_response(200, self.status()),
            "/healthz": lambda: (200, "text/plain", b"ok\n") if self.healthy() else (503, "text/plain", b"collection stalled\n"),
            "/readyz": lambda: (200, "text/plain", b"ready\n") if self.cycles > 0 else (503, "text/plain", b"first collection not finished\n"),
        }
