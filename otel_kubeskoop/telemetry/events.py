# SPDX-License-Identifier: Apache-2.0
"""The event path: a probe's :class:`Event` becomes an OTLP log record with ``event_name``, typed
attributes and its namespace's resource; and a JSON line on each configured line sink.

Probes emit from the event pump thread (the runtime hands them :meth:`EventEmitter.emit`), at up to
tens of thousands of events a second; the resource comes from the resource directory the emitter
is built with. The SDK's log path (``LoggerProvider`` + ``BatchLogRecordProcessor`` + encoder)
costs about 95 us of CPU per event (``README.md``, "Event path"), so it is not used on this path.
``emit`` appends to a bounded queue; one export thread drains it every second (or sooner when a
batch is full), groups the records by resource into an OTLP ``ExportLogsServiceRequest`` built
directly from the opentelemetry-proto messages, and sends it through the SDK's OTLP log exporter at
its per-request layer (retries, backoff, TLS, headers as the SDK does). The wire result is what the SDK would send: one
ResourceLogs per resource, one scope, records with ``event_name``, severity WARN, typed attributes.

Every event the agent receives is either delivered or counted as lost, by probe and reason:
``export_queue_full`` (the queue was full: the backend is slower than the event rate) and
``export_failed`` (the backend refused or was unreachable after the exporter's retries). With the
kernel's own reasons (``rate_limited``, ``ring_buffer_full``) and ``decode_error`` this makes
delivered + lost = what the kernel saw.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter, deque
from typing import IO, Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
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
DEFAULT_QUEUE = 32768  # about 16 MiB at most: a few seconds of a 10k events/s burst
DEFAULT_BATCH = 2048


def probe_of(event: Event) -> str:
    return event.name.split(".", 2)[1]


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
                 line_sinks: list[LineSink], *, queue_size: int = DEFAULT_QUEUE,
                 batch_size: int = DEFAULT_BATCH, flush_interval: float = 1.0) -> None:
        self._resources = resources
        self._exporters = log_exporters
        self._sinks = line_sinks
        self._queue: deque[tuple[Event, Resource]] = deque()
        self._queue_size = queue_size
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
        self._thread: threading.Thread | None = None
        if log_exporters:
            self._thread = threading.Thread(target=self._run, name="kubeskoop-export-events", daemon=True)
            self._thread.start()

    @property
    def emitted(self) -> int:
        return sum(self.delivered.values())

    def emit(self, event: Event) -> None:
        resource = self._resources.event_resource(event.netns)
        if self._sinks:
            self._write_lines(event, resource)
        if not self._exporters:
            self.delivered[probe_of(event)] += 1
            return
        with self._lock:
            if len(self._queue) >= self._queue_size:
                self.lost[(probe_of(event), "export_queue_full")] += 1
                return
            self._queue.append((event, resource))
            full = len(self._queue) >= self._batch_size
        if full:
            self._wake.set()

    def _write_lines(self, event: Event, resource: Resource) -> None:
        record = {
            "timestamp": event.timestamp_ns,
            "event_name": event.name,
            "type": event.upstream_type,
            "resource": dict(resource.attributes),
            "attributes": {**dict(event.attributes), UPSTREAM_TYPE: event.upstream_type},
            "body": event.body,
        }
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

    def _request(self, batch: list[tuple[Event, Resource]]) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest()
        scopes: dict[int, Any] = {}
        now = time.time_ns()
        for event, resource in batch:
            scope_logs = scopes.get(id(resource))
            if scope_logs is None:
                resource_logs = request.resource_logs.add()
                resource_logs.resource.CopyFrom(self._proto(resource))
                scope_logs = scopes[id(resource)] = resource_logs.scope_logs.add()
                scope_logs.scope.CopyFrom(SCOPE)
            record = scope_logs.log_records.add(
                time_unix_nano=event.timestamp_ns or now, observed_time_unix_nano=now,
                severity_number=WARN, severity_text="WARN", event_name=event.name)
            record.body.string_value = event.body or event.name
            record.attributes.extend([self._key_value(kv) for kv in event.attributes])
            record.attributes.append(self._key_value((UPSTREAM_TYPE, event.upstream_type)))
        return request

    def _key_value(self, pair: tuple[str, Any]) -> KeyValue:
        """Attribute pairs repeat (transport, state, reason, the busy addresses): building each
        KeyValue once halves the cost of a record. Bounded: cleared when it grows large."""
        try:
            kv = self._kv_cache.get(pair)
        except TypeError:  # an unhashable value (a list: a kernel stack) is built each time
            return key_values((pair,))[0]
        if kv is None:
            if len(self._kv_cache) >= 65536:
                self._kv_cache.clear()
            kv = self._kv_cache[pair] = key_values((pair,))[0]
        return kv

    def _drain(self) -> None:
        with self._export_lock:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    n = min(self._batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                request = self._request(batch)
                ok = True
                for exporter in self._exporters:
                    try:
                        ok = exporter.export_request(request) and ok
                    except Exception as exc:  # an exporter bug must not kill the export thread
                        log.error("event export raised %s: %s", type(exc).__name__, exc)
                        ok = False
                counts = Counter(probe_of(event) for event, _ in batch)
                if ok:
                    self.delivered.update(counts)
                else:
                    log.warning("event export failed: %d events lost", n)
                    self.lost.update({(probe, "export_failed"): c for probe, c in counts.items()})

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()

    def flush(self) -> None:
        """Export everything queued now (used at shutdown and by tests)."""
        self._drain()

    def samples(self) -> list[Sample]:
        """Delivered and lost counters, per probe, for the node resource."""
        out = [Sample(I.AGENT_EVENTS_DELIVERED, n, None, ((A.PROBE, probe),)) for probe, n in self.delivered.items()]
        out += [Sample(I.AGENT_EVENTS_LOST, n, None, ((A.PROBE, probe), (A.LOSS_REASON, reason)))
                for (probe, reason), n in self.lost.items()]
        return out

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drain()
        for exporter in self._exporters:
            exporter.shutdown()
        for sink in self._sinks:
            sink.close()

