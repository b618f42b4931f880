# SPDX-License-Identifier: Apache-2.0
"""The event path: a probe's :class:`Event` becomes an OTLP log record with ``event_name``, typed
attributes and its namespace's resource; and a JSON line on each configured line sink.

Probes emit from the event pump thread (the runtime hands them :meth:`EventEmitter.emit`), at up to
tens of thousands of events a second; the resource comes from the resource directory the emitter
is built with. The SDK's log path (``LoggerProvider`` + ``BatchLogRecordProcessor`` + encoder)
costs about 95 us of CPU per event (``README.md``, "Event path"), so it is not used on this path.
``emit`` encodes the log record once and appends its bytes to a queue bounded in bytes
(``queue_bytes``: a backlog during an outage costs at most that, and the memory is given back to
the system when the backlog is gone); one export thread drains it every second (or sooner when a
batch is full), groups the records by resource into an OTLP ``ExportLogsServiceRequest`` built
directly from the opentelemetry-proto messages, and sends it through the SDK's OTLP log exporter at
its per-request layer (retries, backoff, TLS, headers as the SDK does). The wire result is what the SDK would send: one
ResourceLogs per resource, one scope, records with ``event_name``, severity WARN, typed attributes.

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
import gc
import json
import logging
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import IO, Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.probe import Event, Sample
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
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
# Attribute pairs built once. At 65,536 entries the cache alone held about 55 MiB (measured with
# tcpreset-like events: ports and addresses rarely repeat), more than the whole event queue.
KV_CACHE_SIZE = 4096
ENTRY_OVERHEAD = 120  # bytes a queued record costs beyond its encoding: bytes object, tuple, deque slot


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


def _malloc_trim() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise; ``man 3 malloc_trim``)."""
    name = ctypes.util.find_library("c")
    if name:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
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
        self._queue: deque[tuple[str, Resource, bytes]] = deque()  # probe, resource, encoded record
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
        self._protos: dict[int, tuple[Resource, ProtoResource]] = {}
        self._kv_cache: dict[tuple[str, Any], KeyValue] = {}
        self.delivered: Counter[str] = Counter()  # probe -> events delivered
        self.lost: Counter[tuple[str, str]] = Counter()  # (probe, reason) -> events lost
        # Called per event with its resource, on the emitting thread: must not block (the live
        # event stream only queues it, see telemetry/stream.py).
        self.hooks: tuple[Callable[[Event, Resource], None], ...] = ()
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
        resource = self._resources.event_resource(event.netns)
        for hook in self.hooks:
            hook(event, resource)
        if self._sinks:
            self._write_lines(event, resource)
        if not self._exporters:
            self.delivered[probe_of(event)] += 1
            return
        data = self._encode(event)
        cost = len(data) + ENTRY_OVERHEAD
        with self._lock:
            if self.queued_bytes + cost > self._queue_bytes or self._closed:
                self.lost[(probe_of(event), "export_queue_full" if not self._closed else "shutdown")] += 1
                return
            self._queue.append((probe_of(event), resource, data))
            self.queued_bytes += cost
            self._high_water = max(self._high_water, self.queued_bytes)
            full = len(self._queue) >= self._batch_size
        if full:
            self._wake.set()

    def _encode(self, event: Event) -> bytes:
        now = time.time_ns()
        record = LogRecord(time_unix_nano=event.timestamp_ns or now, observed_time_unix_nano=now,
                           severity_number=WARN, severity_text="WARN", event_name=event.name)
        record.body.string_value = event.body or event.name
        record.attributes.extend([self._key_value(kv) for kv in event.attributes])
        record.attributes.append(self._key_value((UPSTREAM_TYPE, event.upstream_type)))
        return record.SerializeToString()

    def _write_lines(self, event: Event, resource: Resource) -> None:
        record = event_record(event, resource)
        for sink in self._sinks:
            try:
                sink.write(record)
            except (OSError, ValueError) as exc:
                log.warning("event sink %s: %s", sink.name, exc)

    # Export ------------------------------------------------------------------------------------

    def _proto(self, resource: Resource) -> ProtoResource:
        hit = self._protos.get(id(resource))
        if hit is None or hit[0] is not resource:
            if len(self._protos) > 4096:  # resources come and go with pods; keep the cache bounded
                self._protos.clear()
            hit = self._protos[id(resource)] = (resource, ProtoResource(attributes=key_values(resource.attributes)))
        return hit[1]

    def _request(self, batch: list[tuple[str, Resource, bytes]]) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest()
        scopes: dict[int, Any] = {}
        for _, resource, data in batch:
            scope_logs = scopes.get(id(resource))
            if scope_logs is None:
                resource_logs = request.resource_logs.add()
                resource_logs.resource.CopyFrom(self._proto(resource))
                scope_logs = scopes[id(resource)] = resource_logs.scope_logs.add()
                scope_logs.scope.CopyFrom(SCOPE)
            scope_logs.log_records.add().MergeFromString(data)
        return request

    def _key_value(self, pair: tuple[str, Any]) -> KeyValue:
        """Attribute pairs repeat (transport, state, reason, the busy addresses): building each
        KeyValue once halves the cost of a record. Bounded (``KV_CACHE_SIZE``): cleared when full."""
        try:
            kv = self._kv_cache.get(pair)
        except TypeError:  # an unhashable value (a list: a kernel stack) is built each time
            return key_values((pair,))[0]
        if kv is None:
            if len(self._kv_cache) >= KV_CACHE_SIZE:
                self._kv_cache.clear()
            kv = self._kv_cache[pair] = key_values((pair,))[0]
        return kv

    def _drain(self, deadline: float | None = None) -> None:
        """Send what is queued, a batch at a time; ``deadline`` (``time.monotonic()``) cuts it."""
        with self._export_lock:
            self._drain_locked(deadline)

    def _drain_locked(self, deadline: float | None = None) -> None:
        """:meth:`_drain` with the export lock held (a reload drains to the old outputs too)."""
        while True:
            with self._lock:
                if not self._queue or self._closed:
                    break
                n = min(self._batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                self.queued_bytes -= sum(len(data) + ENTRY_OVERHEAD for _, _, data in batch)
                counts = Counter(probe for probe, _, _ in batch)
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

    def _send(self, request: ExportLogsServiceRequest, deadline: float | None) -> bool:
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
        """After a backlog (an outage) the queue is down to less than a batch: return its memory."""
        with self._lock:
            if len(self._queue) >= self._batch_size or self._high_water < self._queue_bytes // 8:
                return
            self._high_water = 0
        gc.collect()
        _malloc_trim()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()
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
            queued, queued_bytes = len(self._queue), self.queued_bytes
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
            left = Counter(probe for probe, _, _ in self._queue) + self._in_flight
            self._queue.clear()
            self.queued_bytes = 0
            self._in_flight = Counter()
        if left:
            log.warning("shutdown deadline: %d events not delivered (counted as lost)", sum(left.values()))
            self.lost.update({(probe, "shutdown"): n for probe, n in left.items()})
        for exporter in self._exporters:
            exporter.shutdown()
        for sink in self._sinks:
            sink.close()
