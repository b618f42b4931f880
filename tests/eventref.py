# SPDX-License-Identifier: Apache-2.0
"""The event path as it was before records were decoded in batches and written in wire form
(commit 6d3f3ed): a ctypes object per record, ``connection_attributes`` and ``record_event``, and
log records and requests built from the official opentelemetry-proto types. The tests hold the
new path to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.bpf.records import DecodeError, decode_exact
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes._decode import KernelNames, connection_attributes, record_event
from otel_kubeskoop.probes._typecount import Typecount
from otel_kubeskoop.telemetry.events import SCOPE, UPSTREAM_TYPE, WARN
from otel_kubeskoop.telemetry.pipeline import key_values


def typecount_event(table: Typecount, raw: bytes, names: KernelNames, clock_offset_ns: int) -> Event:
    rec: Any = decode_exact(table.record, raw)
    known = table.types.get(rec.hdr.type)
    if known is None:
        raise DecodeError(f"{table.object.name}: unknown event type {rec.hdr.type}")
    word, spec = known
    attrs = connection_attributes(rec.tuple, names, rec.hdr.aux)
    attrs.append((table.attribute, word))
    if table.extra_field:
        attrs += table.extra(getattr(rec, table.extra_field), names)
    return record_event(spec, rec.hdr, attrs, clock_offset_ns)


def log_record(event: Event, observed_ns: int) -> LogRecord:
    record = LogRecord(time_unix_nano=event.timestamp_ns or observed_ns, observed_time_unix_nano=observed_ns,
                       severity_number=WARN, severity_text="WARN", event_name=event.name)
    record.body.string_value = event.body or event.name
    record.attributes.extend(key_values(event.attributes))
    record.attributes.extend(key_values(((UPSTREAM_TYPE, event.upstream_type),)))
    return record


def logs_request(events: Iterable[Event], resource_of: Callable[[int | None], Resource],
                 observed_ns: int) -> ExportLogsServiceRequest:
    """One ResourceLogs per resource, in order of first appearance, records in event order."""
    request = ExportLogsServiceRequest()
    scopes: dict[int, Any] = {}
    for event in events:
        resource = resource_of(event.netns)
        scope_logs = scopes.get(id(resource))
        if scope_logs is None:
            resource_logs = request.resource_logs.add()
            resource_logs.resource.CopyFrom(ProtoResource(attributes=key_values(resource.attributes)))
            scope_logs = scopes[id(resource)] = resource_logs.scope_logs.add()
            scope_logs.scope.CopyFrom(SCOPE)
        scope_logs.log_records.append(log_record(event, observed_ns))
    return request
