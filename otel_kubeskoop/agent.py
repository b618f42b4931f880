# SPDX-License-Identifier: Apache-2.0
"""Wiring: config -> namespaces -> probes -> resource directory -> OTLP pipeline, event path,
compat endpoint -> HTTP endpoints; and the cycle loop.

One agent thread runs the cycle every interval: scan namespaces into a :class:`Cycle` snapshot,
refresh the resource directory, collect every probe over the snapshot, hand the samples (grouped
by resource) to the metric pipeline and the compat endpoint, and wake the export thread (which
sends the latest state, so the backend never holds collection up). The parts get the directory
when they are built and never call the agent back; events go from the probes to the event emitter
directly.

Stopping keeps to the shutdown budget (``shutdownTimeout``, well under Kubernetes' 30 s grace): the
cycle ends, a final collection is made, probes stop, then the event backlog and the final metric
export share what is left; what is not delivered by the deadline is counted as lost.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from otel_kubeskoop import limits, live_stream, outputs
from otel_kubeskoop.outputs import StartError
from otel_kubeskoop.config import Config
from otel_kubeskoop.identity.directory import ResourceDirectory
from otel_kubeskoop.identity.resources import Identity
from otel_kubeskoop.probe import Cycle, ProbeSpec, Sample
from otel_kubeskoop.probes import REGISTRY
from otel_kubeskoop.reload import Reloader
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.server import HTTPServer
from otel_kubeskoop.status import StatusBoard, routes
from otel_kubeskoop.telemetry.compat import CompatEndpoint
from otel_kubeskoop.telemetry.events import EventEmitter
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from otel_kubeskoop.telemetry.sender import MetricSender
from otel_kubeskoop.topology.attribution import Attributor
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.pods import PodCache
from otel_kubeskoop.topology.remotes import RemoteDirectory
from otel_kubeskoop.topology.services import ServiceCache
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
        # Who connections' peers are (tcprtt, tcpconnect): this node's pods, Services by ClusterIP.
        # Listed from the start when a configured probe names peers, else on the first lookup.
        self.services = ServiceCache()
        self.remotes = RemoteDirectory(self.directory.peer, self.services.get, self.services.settled)
        self.names_peers = any(A.REMOTE_KIND in i.attributes for p in config.probes if p.name in registry
                                for i in registry[p.name].instruments)
        if metric_exporter is None:
            metric_exporter = outputs.metric_exporter(config)
        self.pipeline = MetricPipeline(metric_exporter, self.directory) if metric_exporter is not None else None
        self.sender: MetricSender | None = None  # started with the cycle
        self.events = EventEmitter(self.directory, *outputs.event_outputs(config, log_exporters))
        self.stream = live_stream.event_stream(config, self.events, self.directory)
        self.compat = (CompatEndpoint(config.node_name, [name for name, _ in config.additional_labels], self.directory,
                                      max_tuple_series=raw.compat.max_tuple_series)
                       if raw.compat.enabled and config.address else None)
        self.runtime = ProbeRuntime(config.probes, proc_root=raw.proc_root, registry=registry, emit=self.events.emit,
                                    bpf_stats=raw.bpf_stats.enabled, cgroup_root=raw.cgroup_root, sys_root=raw.sys_root,
                                    emit_batch=self.events.emit_batch)
        self.snapshot = Cycle()  # the last namespace scan
        self.lock = threading.RLock()  # a cycle, or a config reload (reload.py), at a time
        self.reloader = Reloader(self)
        self.board = StatusBoard()
        try:
            self.server = HTTPServer(config.address, routes(self)) if config.address else None
        except OSError as exc:
            raise StartError(f"{config.source}: address: cannot listen on {config.address!r}: "
                             f"{exc.strerror or exc}") from None
        self._stop = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.cycles = 0
        self.loop_started: float | None = None  # time.monotonic(): liveness counts from here
        self.last_cycle_end: float | None = None
        self.last_cycle_seconds: float | None = None

    # Lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Scan namespaces, start the probes and serve HTTP; cycles are then run by :meth:`cycle`."""
        self.pods.start()
        if self.names_peers:
            self.services.start()
        self.runtime.start(self.scan())
        self.board.publish(self)
        if self.server is not None:
            self.server.start()
        if self.stream is not None:
            self.stream.start()
        self.reloader.start()

    def start(self) -> None:
        """:meth:`open`, then run :meth:`cycle` every interval on the agent thread."""
        self.open()
        self.loop_started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="kubeskoop-agent", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self.lock:
                self.cycle()
            interval = self.config.interval  # a reload may change it
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a cycle took longer than the interval: skip, don't pile up
                skipped = int((now - next_at) // interval) + 1
                log.warning("collection is %d interval(s) behind; skipping ahead", skipped)
                next_at += skipped * interval
            self._stop.wait(next_at - now)

    def stop(self) -> None:
        """Stop within the shutdown budget: end the cycle, collect once more, stop the probes,
        then send the event backlog (half of what is left) and the final metrics (the rest), and
        release everything. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.config.shutdown_timeout
        self._stop.set()
        self.reloader.stop()
        wedged = False
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) / 2)
            wedged = self._thread.is_alive()
            if wedged:
                log.warning("the collection cycle did not end in time: no final collection")
            self._thread = None
        if self.stream is not None:
            self.stream.stop()
        # A final collection, so counts since the last cycle are not lost.
        samples = self.collect() if self.cycles and not wedged else None
        self.runtime.stop()
        self.pods.stop()
        self.services.stop()
        self.events.shutdown(time.monotonic() + max(0.0, deadline - time.monotonic()) / 2)
        if samples is not None:
            self.publish(samples)  # with the event counts the drain has settled
        if self.sender is not None:
            delivered = self.sender.close(deadline)
            log.info("final metric export %s", "delivered" if delivered else f"not delivered: {self.sender.last_error}")
        if self.pipeline is not None:
            self.pipeline.shutdown()
        self.discovery.close()
        if self.server is not None:
            self.server.stop()
        lost = sum(self.events.lost.values())
        log.info("events: %d delivered, %d lost %s", self.events.emitted, lost,
                 dict(self.events.status()["probes"]) if lost else "")

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
        snapshot = Cycle.of(self.discovery.scan(), self.remotes)
        self.directory.refresh(snapshot)
        self.snapshot = snapshot
        return snapshot

    def overflow(self) -> dict[str, int]:
        """Items each cap on tracked state left out, summed over cycles (every cap, zeros too)."""
        refused = self.pipeline.overflow if self.pipeline is not None else {}
        return {I.CAP_METRIC_RESOURCES: refused.get("resources", 0), I.CAP_METRIC_SERIES: refused.get("series", 0),
                I.CAP_COMPAT_TUPLE_SERIES: self.compat.overflow if self.compat is not None else 0,
                I.CAP_DIRECTORY_RESOURCES: self.directory.overflow, I.CAP_NETNS_FD_LIMIT: self.discovery.left_out_total,
                I.CAP_SERVICE_ADDRESSES: self.services.overflow}

    @property
    def export_failures(self) -> int:
        return self.sender.failures if self.sender is not None else 0

    def cycle(self) -> None:
        t0 = time.perf_counter()
        self.publish(self.collect())
        if self.sender is None and self.pipeline is not None:
            self.sender = MetricSender(self.pipeline, max(self.config.interval, self.config.otlp.timeout))
        if self.sender is not None:
            self.sender.offer()
        self.cycles += 1
        self.last_cycle_seconds = time.perf_counter() - t0
        self.last_cycle_end = time.monotonic()
        self.board.publish(self)

    def flush(self, timeout: float = 30.0) -> bool:
        """Export the last cycle's state now and wait for it; True if it was delivered."""
        return self.sender.flush(timeout) if self.sender is not None else False

    def collect(self) -> list[Sample]:
        """Every probe's samples over a fresh scan (the runtime's own when the scan fails)."""
        try:
            return self.runtime.collect(self.scan())
        except Exception as exc:  # discovery itself failed: keep the agent alive, report it
            log.error("collection cycle failed: %s: %s", type(exc).__name__, exc)
            return self.runtime.self_samples()

    def publish(self, samples: list[Sample]) -> None:
        """The agent's own samples added, grouped by resource: into the pipeline and the compat endpoint.

        Its own come first, the caps' counts first of all: a full cap keeps the series it has
        and refuses new ones in the order given, so it never hides that it is full."""
        own = [Sample(I.AGENT_OVERFLOW, n, None, ((A.CAP, cap),)) for cap, n in self.overflow().items()]
        own.append(Sample(I.AGENT_NETNS_COUNT, len(self.snapshot.namespaces)))
        own.append(Sample(I.AGENT_NETNS_LEFT_OUT, self.discovery.left_out))
        if self.last_cycle_seconds is not None:
            own.append(Sample(I.AGENT_CYCLE_DURATION, self.last_cycle_seconds))
        own.append(Sample(I.AGENT_EXPORT_FAILURES, self.export_failures, None, ((A.SIGNAL, "metrics"),)))
        own += self.events.samples() + self.reloader.samples()
        if self.stream is not None:
            own += self.stream.samples()
        groups, live = self.directory.route(own + samples)
        if self.pipeline is not None:
            self.pipeline.update(groups, live)
        if self.compat is not None:
            self.compat.update(groups)
        if self.stream is not None:
            self.stream.cycle(groups)
