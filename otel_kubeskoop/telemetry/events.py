# SPDX-License-Identifier: Apache-2.0
"""The event path: a probe's :class:`Event` becomes an OTel log record with ``event_name``, typed
attributes and its namespace's resource, and a JSON line on each configured line sink.

This module holds the only ``Logger.emit`` call (the logs SDK is still underscore-prefixed, so it is
pinned and kept in one place). One ``LoggerProvider`` serves every resource: a
``ReadWriteLogRecord`` keeps its own ``resource`` through ``Logger.emit`` (SDK >= 1.39, PR #4676),
and the encoder groups records into one ResourceLogs per resource (option L1 of
``reference/otel-python.md`` section 2.3).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_kubeskoop import __version__
from otel_kubeskoop.probe import Event

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("otel_kubeskoop.probes", __version__)
UPSTREAM_TYPE = "kubeskoop.event.type"


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


class EventEmitter:
    """Resolves an event's namespace to a resource and sends it to OTLP and the line sinks."""

    def __init__(self, resource_for: Callable[[int | None], Resource], log_exporters: list[Any],
                 line_sinks: list[LineSink], default_resource: Resource) -> None:
        self._resource_for = resource_for
        self._sinks = line_sinks
        self._provider: LoggerProvider | None = None
        self.emitted = 0
        if log_exporters:
            self._provider = LoggerProvider(resource=default_resource, shutdown_on_exit=False)
            for exporter in log_exporters:
                self._provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            self._logger = self._provider.get_logger(SCOPE.name, SCOPE.version)

    def emit(self, event: Event) -> None:
        resource = self._resource_for(event.netns)
        attributes: dict[str, Any] = dict(event.attributes)
        attributes[UPSTREAM_TYPE] = event.upstream_type
        if self._provider is not None:
            self._logger.emit(ReadWriteLogRecord(
                log_record=LogRecord(
                    timestamp=event.timestamp_ns or None,
                    event_name=event.name,
                    severity_number=SeverityNumber.WARN,
                    severity_text="WARN",
                    body=event.body or event.name,
                    attributes=attributes,
                ),
                resource=resource,
                instrumentation_scope=SCOPE,
            ))
        if self._sinks:
            record = {
                "timestamp": event.timestamp_ns,
                "event_name": event.name,
                "type": event.upstream_type,
                "resource": dict(resource.attributes),
                "attributes": attributes,
                "body": event.body,
            }
            for sink in self._sinks:
                try:
                    sink.write(record)
                except (OSError, ValueError) as exc:
                    log.warning("event sink %s: %s", sink.name, exc)
        self.emitted += 1

    def flush(self) -> None:
        if self._provider is not None:
            self._provider.force_flush()

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
        for sink in self._sinks:
            sink.close()
