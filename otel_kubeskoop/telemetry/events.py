# SPDX-License-Identifier: Apache-2.0
"""The event path: a probe's :class:`Event` becomes an OTLP log record with ``event_name``, typed
attributes and its namespace's resource; and a JSON line on each configured line sink.

Probes emit from the event pump thread (the runtime hands them :meth:`EventEmitter.emit`), at up to
tens of thousands of events a second; the resource comes from the resource directory the emitter
is built with. The SDK's log path (``LoggerProvider`` + ``BatchLogRecordProcessor`` + encoder)
costs about 95 us of CPU per event (``README.md``, "Event path"), so it is not used on this path.
``emit_batch`` takes the events of one ring-buffer read, encodes each log record once in wire form
(``telemetry/logwire.py``: attribute encodings built once per distinct value) and appends the bytes
to a queue bounded in bytes (``queue_bytes``: a backlog during an outage costs at most that, and
the memory is given back to the system when the backlog is gone); one export thread drains it
every second (or sooner when a batch is full), joins the records by resource into an OTLP
``ExportLogsServiceRequest``, and sends it through the SDK's OTLP log exporter at its per-request
layer (retries, backoff, TLS, headers, compression as the SDK does; socket writes and zlib run
without the GIL). The wire result is what the SDK would send: one ResourceLogs per resource, one
scope, records with ``event_name``, severity WARN, typed attributes.

Every event the agent receives is either delivered or counted as lost, by probe and reason:
``export_queue_full`` (the queue was full: the backend is slower than the event rate) and
``export_failed`` (the backend refused or was unreachable after the exporter's retries) and
``shutdown`` (still queued, or being sent, when the shutdown deadline came). With the
kernel's own reasons (``rate_limited``, ``ring_buffer_full``) and ``decode_error`` this makes
delivered + lost = what the kernel saw.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.probe import Event, Sample
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.telemetry.logwire import EncodedRequest, RecordEncoder, request_bytes, resource_logs_head
from otel_kubeskoop.telemetry.pipeline import key_values

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope(name="otel_kubeskoop.probes", version=__version__)
UPSTREAM_TYPE = "kubeskoop.event.type"
WARN = SeverityNumber.SEVERITY_NUMBER_WARN
# About 8,600 records: 4 s of 2,000 events/s while one request is in flight (a longer outage loses
# events at any budget, counted); at 100 namespaces RSS stays under 100 MB through a 10-minute
# outage (bench/results/outage_rss.json).
DEFAULT_QUEUE_BYTES = 4 << 20
DEFAULT_BATCH = 2048
ENTRY_OVERHEAD = 48  # bytes a queued record costs beyond its encoding: bytes object header, list slot


def probe_of(event: Event) -> str:
    return event.name.split(".", 2)[1]


def event_record(event: Event, resource: Resource) -> dict[str, Any]:
    """An event as one JSON object: the OTLP record's name, resource, attributes and body."""
    return {
        "timestamp": event.timestamp_ns,
        "event_name": event.name,
        "type": event.upstream_type,
        "resource": dict(resource.attributes),
        "attributes": {**dict(event.attributes), UPSTREAM_TYPE: event.upstream_type},
        "body": event.body,
    }


@functools.cache
def _trim_function() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")  # runs ldconfig: once
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def _malloc_trim() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise; ``man 3 malloc_trim``)."""
    trim = _trim_function()
    if trim is not None:
        trim(0)


class LineSink:
    """Writes one JSON object per event to a stream (stdout, stderr or an appended file)."""

    def __init__(self, name: str, stream: IO[str], owned: bool = False) -> None:
        self.name = name
        self._stream = stream
        self._owned = owned
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def line_sink(name: str, path: str | None = None) -> LineSink:
    if name == "stdout":
        return LineSink(name, sys.stdout)
    if name == "stderr":
        return LineSink(name, sys.stderr)
    if name == "file" and path:
        return LineSink(name, open(path, "a", encoding="utf-8"), owned=True)  # noqa: SIM115
    raise ValueError(f"not a line sink: {name}")


class EventResources(Protocol):
    """Where the emitter gets an event's resource (the resource directory)."""

    def event_resource(self, inode: int | None) -> Resource: ...


class EventEmitter:
    """Resolves an event's namespace to a resource; queues it for OTLP and writes the line sinks."""

    def __init__(self, resources: EventResources, log_exporters: list[Any],
                 line_sinks: list[LineSink], *, queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 batch_size: int = DEFAULT_BATCH, flush_interval: float = 1.0) -> None:
        self._resources = resources
        self._exporters = log_exporters
        self._sinks = line_sinks
        # Encoded records in chunks of one probe and resource, in order: the queue holds a few
        # container objects per ring-buffer read instead of one per record, so a backlog does not
        # feed the garbage collector's older generations (full collections of the whole heap).
        self._queue: deque[tuple[str, Resource, list[bytes]]] = deque()
        self._queued = 0  # records in the queue
        self._queue_bytes = queue_bytes
        self.queued_bytes = 0
        self._high_water = 0  # bytes queued at most since the queue was last empty
        self._in_flight: Counter[str] = Counter()  # probe -> events in the request being sent
        self._final_deadline: float | None = None
        self._closed = False  # losses are settled: a late result of an abandoned request is ignored
        self.last_error = ""
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._export_lock = threading.Lock()  # one drain at a time (thread, flush, shutdown)
        self._heads: dict[int, tuple[Resource, tuple[bytes, bytes]]] = {}
        self._encoder = RecordEncoder(WARN, "WARN", UPSTREAM_TYPE)
        self._probes: dict[str, str] = {}  # event name -> probe
        self.delivered: Counter[str] = Counter()  # probe -> events delivered
        self.lost: Counter[tuple[str, str]] = Counter()  # (probe, reason) -> events lost
        # Called once per batch with its (event, resource) pairs, on the emitting thread: must not
        # block (the live event stream only queues them, see telemetry/stream.py).
        self.hooks: tuple[Callable[[Sequence[tuple[Event, Resource]]], None], ...] = ()
        self._thread: threading.Thread | None = None
        self._start_thread()

    def _start_thread(self) -> None:
        if self._exporters and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kubeskoop-export-events", daemon=True)
            self._thread.start()

    def replace_outputs(self, log_exporters: list[Any], line_sinks: list[LineSink]) -> None:
        """Send from now on to these exporters and sinks (a config reload); what is queued goes
        to the old ones first, which are then shut down. The counters go on."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._export_lock:
            self._drain_locked()
            old_exporters, old_sinks = self._exporters, self._sinks
            self._exporters, self._sinks = list(log_exporters), list(line_sinks)
        for exporter in old_exporters:
            exporter.shutdown()
        for sink in old_sinks:
            sink.close()
        self._start_thread()

    @property
    def emitted(self) -> int:
        return sum(self.delivered.values())

    def emit(self, event: Event) -> None:
        self.emit_batch((event,))

    def emit_batch(self, events: Sequence[Event]) -> None:
        """Emit ``events`` (one ring-buffer read's worth): resources looked up once per namespace,
        records encoded, queued under one lock; what finds no room is counted lost."""
        if not events:
            return
        lookup, resources = self._resources.event_resource, {}
        batch = []
        for event in events:
            netns = event.netns
            resource = resources.get(netns)
            if resource is None:
                resource = resources[netns] = lookup(netns)
            batch.append((event, resource))
        for hook in self.hooks:
            hook(batch)
        if self._sinks:
            for event, resource in batch:
                self._write_lines(event, resource)
        probe = self._probe_of
        if not self._exporters:
            with self._lock:
                self.delivered.update(probe(event.name) for event in events)
            return
        now, record = time.time_ns(), self._encoder.record
        encoded = [record(event.name, event.upstream_type, event.body, event.attributes, event.timestamp_ns or now, now)
                   for event in events]
        probes, lost = self._probes, Counter[tuple[str, str]]()
        with self._lock:
            reason = "shutdown" if self._closed else "export_queue_full"
            queued, budget, queue, n = self.queued_bytes, self._queue_bytes, self._queue, 0
            chunk = queue[-1] if queue else None
            for (event, resource), data in zip(batch, encoded):
                probe_name = probes.get(event.name) or probe(event.name)
                cost = len(data) + ENTRY_OVERHEAD
                if queued + cost > budget or self._closed:
                    lost[(probe_name, reason)] += 1
                    continue
                if chunk is None or chunk[1] is not resource or chunk[0] != probe_name:
                    chunk = (probe_name, resource, [])
                    queue.append(chunk)
                chunk[2].append(data)
                queued += cost
                n += 1
            self.queued_bytes = queued
            self._queued += n
            self._high_water = max(self._high_water, queued)
            if lost:
                self.lost.update(lost)
            full = self._queued >= self._batch_size
        if full and not self._wake.is_set():  # set() takes a lock and wakes waiters: once will do
            self._wake.set()

    def _probe_of(self, name: str) -> str:
        probe = self._probes.get(name)
        if probe is None:
            probe = self._probes[name] = name.split(".", 2)[1]
        return probe

    def _write_lines(self, event: Event, resource: Resource) -> None:
        record = event_record(event, resource)
        for sink in self._sinks:
            try:
                sink.write(record)
            except (OSError, ValueError) as exc:
                log.warning("event sink %s: %s", sink.name, exc)

    # Export ------------------------------------------------------------------------------------

    def _head(self, resource: Resource) -> tuple[bytes, bytes]:
        """A resource's encoded ``resource`` and ``scope`` fields, built once per resource object
        (the directory makes a new object when a pod's attributes change)."""
        hit = self._heads.get(id(resource))
        if hit is None or hit[0] is not resource:
            if len(self._heads) > 4096:  # resources come and go with pods; keep the cache bounded
                self._heads.clear()
            encoded = ProtoResource(attributes=key_values(resource.attributes)).SerializeToString()
            hit = self._heads[id(resource)] = (resource, resource_logs_head(encoded, SCOPE))
        return hit[1]

    def _request(self, batch: list[tuple[str, Resource, list[bytes]]]) -> EncodedRequest:
        """The logs request of ``batch`` (queue chunks): one ResourceLogs per resource, records in
        queue order."""
        groups: dict[int, tuple[tuple[bytes, bytes], list[bytes]]] = {}
        for _, resource, records in batch:
            group = groups.get(id(resource))
            if group is None:
                group = groups[id(resource)] = (self._head(resource), [])
            group[1].extend(records)
        return EncodedRequest(request_bytes(groups), sum(len(records) for _, _, records in batch))

    def _take(self, n: int) -> list[tuple[str, Resource, list[bytes]]]:
        """The first ``n`` queued records, as chunks (lock held)."""
        out, queue = [], self._queue
        while n > 0 and queue:
            probe_name, resource, records = queue.popleft()
            if len(records) > n:
                queue.appendleft((probe_name, resource, records[n:]))
                records = records[:n]
            out.append((probe_name, resource, records))
            n -= len(records)
        taken = sum(len(records) for _, _, records in out)
        self._queued -= taken
        self.queued_bytes -= sum(len(data) for _, _, records in out for data in records) + taken * ENTRY_OVERHEAD
        return out

    def _drain(self, deadline: float | None = None, *, full_only: bool = False) -> None:
        """Send what is queued, a batch at a time; ``deadline`` (``time.monotonic()``) cuts it;
        ``full_only``: only full batches (the rest waits for more, or for the flush interval)."""
        with self._export_lock:
            self._drain_locked(deadline, full_only=full_only)

    def _drain_locked(self, deadline: float | None = None, *, full_only: bool = False) -> None:
        """:meth:`_drain` with the export lock held (a reload drains to the old outputs too)."""
        while True:
            with self._lock:
                if not self._queued or self._closed or (full_only and self._queued < self._batch_size):
                    break
                batch = self._take(self._batch_size)
                counts: Counter[str] = Counter()
                for probe_name, _, records in batch:
                    counts[probe_name] += len(records)
                n = counts.total()
                self._in_flight = counts
            ok = self._send(self._request(batch), deadline)
            del batch
            with self._lock:
                self._in_flight = Counter()
                if self._closed:  # the shutdown deadline passed while this was sent: counted then
                    return
                if ok:
                    self.delivered.update(counts)
                else:
                    log.warning("event export failed (%s): %d events lost", self.last_error, n)
                    self.lost.update({(probe, "export_failed"): c for probe, c in counts.items()})
        self._give_back()

    def _send(self, request: EncodedRequest, deadline: float | None) -> bool:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            self.last_error = "the shutdown deadline came before the request was sent"
            return False
        ok = True
        for exporter in self._exporters:
            try:
                sent = exporter.export_request(request, timeout)
                if not sent:
                    self.last_error = getattr(exporter, "last_error", "") or "export failed"
            except Exception as exc:  # an exporter bug must not kill the export thread
                log.error("event export raised %s: %s", type(exc).__name__, exc)
                sent, self.last_error = False, f"{type(exc).__name__}: {exc}"
            ok = ok and sent
        return ok

    def _give_back(self) -> None:
        """After a backlog (an outage: the queue was half full or more) the queue is down to less
        than a batch: return its memory. The queue holds no reference cycles, so its memory is
        free once sent; no collection is needed (a full one stalls every thread for tens of ms,
        enough to fill a probe's ring buffer at high rates)."""
        with self._lock:
            if self._queued >= self._batch_size or self._high_water < self._queue_bytes // 2:
                return
            self._high_water = 0
        _malloc_trim()

    def _run(self) -> None:
        # Woken by a full batch: send full batches only. Sending whatever came in during the last
        # request made a request of a few dozen records every few milliseconds at high rates,
        # each costing about 1 ms of CPU in the HTTP client (bench/event_path.py).
        while not self._stop.is_set():
            full = self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain(full_only=full and not self._stop.is_set())
        self._drain(self._final_deadline)

    def flush(self) -> None:
        """Export everything queued now (used by tests)."""
        self._drain()

    def samples(self) -> list[Sample]:
        """Delivered and lost counters, per probe, for the node resource."""
        out = [Sample(I.AGENT_EVENTS_DELIVERED, n, None, ((A.PROBE, probe),)) for probe, n in self.delivered.items()]
        out += [Sample(I.AGENT_EVENTS_LOST, n, None, ((A.PROBE, probe), (A.LOSS_REASON, reason)))
                for (probe, reason), n in self.lost.items()]
        return out

    def status(self) -> dict[str, Any]:
        """Delivered and lost by probe and reason, and the queue, for ``/status``."""
        with self._lock:
            delivered, lost = dict(self.delivered), dict(self.lost)
            queued, queued_bytes = self._queued, self.queued_bytes
        by_probe: dict[str, dict[str, Any]] = {p: {"delivered": n, "lost": {}} for p, n in delivered.items()}
        for (probe, reason), n in lost.items():
            by_probe.setdefault(probe, {"delivered": 0, "lost": {}})["lost"][reason] = n
        return {"probes": by_probe, "queued": queued, "queued_bytes": queued_bytes,
                "queue_budget_bytes": self._queue_bytes, "last_error": self.last_error}

    def shutdown(self, deadline: float | None = None) -> None:
        """Send what is queued until ``deadline`` (``time.monotonic()``; None: no limit); whatever
        is still queued or being sent then is counted as lost (``shutdown``). Then close."""
        self._final_deadline = deadline
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            self._thread = None
        elif self._exporters:
            self._drain(deadline)
        with self._lock:
            self._closed = True
            left = Counter() + self._in_flight
            for probe_name, _, records in self._queue:
                left[probe_name] += len(records)
            self._queue.clear()
            self._queued = 0
            self.queued_bytes = 0
            self._in_flight = Counter()
        if left:
            log.warning("shutdown deadline: %d events not delivered (counted as lost)", sum(left.values()))
            self.lost.update({(probe, "shutdown"): n for probe, n in left.items()})
        for exporter in self._exporters:
            exporter.shutdown()
        for sink in self._sinks:
            sink.close()
