# SPDX-License-Identifier: Apache-2.0
"""Wiring: config -> namespaces -> probes -> resource directory -> OTLP pipeline, event path,
compat endpoint -> HTTP endpoints; and the cycle loop.

One agent thread runs the cycle every interval: scan namespaces into a :class:`Cycle` snapshot,
refresh the resource directory, collect every probe over the snapshot, hand the samples (grouped
by resource) to the metric pipeline and the compat endpoint, make one export call. The parts get
the directory when they are built and never call the agent back; events go from the probes to the
event emitter directly.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from otel_kubeskoop import limits, outputs
from otel_kubeskoop.config import Config
from otel_kubeskoop.identity.directory import ResourceDirectory
from otel_kubeskoop.identity.resources import Identity
from otel_kubeskoop.probe import Cycle, ProbeSpec, Sample
from otel_kubeskoop.probes import REGISTRY
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.server import HTTPServer
from otel_kubeskoop.status import StatusBoard, routes
from otel_kubeskoop.telemetry.compat import CompatEndpoint
from otel_kubeskoop.telemetry.events import EventEmitter
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from otel_kubeskoop.topology.attribution import Attributor
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.pods import PodCache
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: Config, *, metric_exporter: Any = None, log_exporters: list[Any] | None = None,
                 registry: Mapping[str, ProbeSpec] = REGISTRY) -> None:
        """Exporters default to what the config asks for, probes to the registry's; tests pass
        real SDK exporters of their own, and probes over recorded kernel answers."""
        self.config = config
        raw = config.raw
        # As many namespaces as the descriptor limit holds (raised to the hard one by `run`).
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.discovery = NetnsDiscovery(proc_root=raw.proc_root, netns_dir=raw.netns_dir,
                                        max_namespaces=limits.namespace_cap(self.fd_limit, config.probes))
        # Pod metadata from the Kubernetes API (in-cluster, or KUBECONFIG); without API access the
        # cache is disabled, says so once, and namespaces are reported by inode.
        self.pods = PodCache(config.node_name)
        identity = Identity(config.node_name, socket.gethostname(), config.cluster_name)
        self.directory = ResourceDirectory(identity, Attributor(self.pods), config.additional_labels)
        if metric_exporter is None:
            metric_exporter = outputs.metric_exporter(config)
        self.pipeline = MetricPipeline(metric_exporter, self.directory) if metric_exporter is not None else None
        self.events = EventEmitter(self.directory, *outputs.event_outputs(config, log_exporters))
        self.compat = (CompatEndpoint(config.node_name, [name for name, _ in config.additional_labels], self.directory,
                                      max_tuple_series=raw.compat.max_tuple_series)
                       if raw.compat.enabled and config.address else None)
        self.runtime = ProbeRuntime(config.probes, proc_root=raw.proc_root, registry=registry, emit=self.events.emit,
                                    bpf_stats=raw.bpf_stats.enabled, cgroup_root=raw.cgroup_root, sys_root=raw.sys_root)
        self.snapshot = Cycle()  # the last namespace scan
        self.board = StatusBoard()
        self.server = HTTPServer(config.address, routes(self)) if config.address else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cycles = 0
        self.export_failures = 0
        self.last_cycle_end: float | None = None
        self.last_cycle_seconds: float | None = None

    # Lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Scan namespaces, start the probes and serve HTTP; cycles are then run by :meth:`cycle`."""
        self.pods.start()
        self.runtime.start(self.scan())
        self.board.publish(self)
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

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        return self.board.read()

    # The cycle ---------------------------------------------------------------------------------

    def scan(self) -> Cycle:
        """This cycle's snapshot of the namespaces; the directory takes it (owners, resources)."""
        snapshot = Cycle.of(self.discovery.scan())
        self.directory.refresh(snapshot, self.discovery.gone_since_last_scan)
        self.snapshot = snapshot
        return snapshot

    def cycle(self) -> None:
        t0 = time.perf_counter()
        try:
            samples = self.runtime.collect(self.scan())
        except Exception as exc:  # discovery itself failed: keep the agent alive, report it
            log.error("collection cycle failed: %s: %s", type(exc).__name__, exc)
            samples = self.runtime.self_samples()
        samples.append(Sample(I.AGENT_NETNS_COUNT, len(self.snapshot.namespaces)))
        samples.append(Sample(I.AGENT_NETNS_LEFT_OUT, self.discovery.left_out))
        if self.last_cycle_seconds is not None:
            samples.append(Sample(I.AGENT_CYCLE_DURATION, self.last_cycle_seconds))
        samples.append(Sample(I.AGENT_EXPORT_FAILURES, self.export_failures, None, ((A.SIGNAL, "metrics"),)))
        samples += self.events.samples()
        groups, live = self.directory.route(samples)
        if self.pipeline is not None:
            self.pipeline.update(groups, live)
            if not self.pipeline.export():
                self.export_failures += 1
        if self.compat is not None:
            self.compat.update(groups)
        self.cycles += 1
        self.last_cycle_seconds = time.perf_counter() - t0
        self.last_cycle_end = time.monotonic()
        self.board.publish(self)
