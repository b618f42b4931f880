# SPDX-License-Identifier: Apache-2.0
"""OTLP log records and logs requests written directly in protobuf wire form
(https://protobuf.dev/programming-guides/encoding/), for the event path.

Building each record as an opentelemetry-proto ``LogRecord`` message and merging it into a request
cost about 20 us of CPU per event (``bench/event_path.py``); here a record is a join of byte
strings: its two timestamps, parts fixed per event type (severity, body, ``event_name``, the
upstream type attribute) and one encoded ``KeyValue`` per attribute, each built once per distinct
(key, value) and kept (bounded). Field numbers are read from the official messages' descriptors,
fields are written in field-number order as the protobuf runtime does, and the unit tests check
that the bytes parse to the same messages, field by field, as the official types build
(``tests/unit/test_logwire.py``). Attribute values other than str and int (bool, float, arrays)
are encoded by the official types; an int beyond int64, which OTLP cannot carry, as its decimal
string.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

__all__ = ["EncodedRequest", "RecordEncoder", "request_bytes", "resource_logs_head"]

_FIXED64, _LEN, _VARINT = 1, 2, 0
MAX_CACHED_PAIRS = 16384  # about 2 MiB of small bytes; cleared when full


def _tag(message: Any, field: str, wire_type: int) -> bytes:
    return varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | wire_type)


def varint(value: int) -> bytes:
    """A non-negative int as a protobuf base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # ports and the like: one int operation instead of the loop
        return (value & 0x7F | 0x80 | (value >> 7) << 8).to_bytes(2, "little")
    if value < 0x200000:
        return (value & 0x7F | 0x80 | (value >> 7 & 0x7F | 0x80) << 8 | (value >> 14) << 16).to_bytes(3, "little")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    return b"".join((tag, varint(len(payload)), payload))


_TIME = struct.Struct("<Q")
_TIME_TAG = _tag(LogRecord, "time_unix_nano", _FIXED64)
_OBSERVED_TAG = _tag(LogRecord, "observed_time_unix_nano", _FIXED64)
_SEVERITY_TAG = _tag(LogRecord, "severity_number", _VARINT)
_SEVERITY_TEXT_TAG = _tag(LogRecord, "severity_text", _LEN)
_BODY_TAG = _tag(LogRecord, "body", _LEN)
_ATTRIBUTE_TAG = _tag(LogRecord, "attributes", _LEN)
_EVENT_NAME_TAG = _tag(LogRecord, "event_name", _LEN)
_KEY_TAG = _tag(KeyValue, "key", _LEN)
_VALUE_TAG = _tag(KeyValue, "value", _LEN)
_STRING_TAG = _tag(AnyValue, "string_value", _LEN)
_INT_TAG = _tag(AnyValue, "int_value", _VARINT)
_RECORD_TAG = _tag(ScopeLogs, "log_records", _LEN)
_SCOPE_TAG = _tag(ScopeLogs, "scope", _LEN)
_RESOURCE_TAG = _tag(ResourceLogs, "resource", _LEN)
_SCOPE_LOGS_TAG = _tag(ResourceLogs, "scope_logs", _LEN)
_RESOURCE_LOGS_TAG = _tag(ExportLogsServiceRequest, "resource_logs", _LEN)
_INT64_MAX = (1 << 63) - 1
_LENGTHS = [varint(n) for n in range(4096)]  # record lengths, encoded once


def _string(value: str) -> bytes:
    return length_delimited(_STRING_TAG, value.encode())


def encode_pair(key: str, value: Any) -> bytes:
    """One attribute as a LogRecord ``attributes`` field: tag, length, ``KeyValue``."""
    if type(value) is str:
        any_value = _string(value)
    elif type(value) is int and 0 <= value <= _INT64_MAX:
        any_value = _INT_TAG + varint(value)
    else:  # bool, float, negative int, arrays: the official encoder
        from otel_kubeskoop.telemetry.pipeline import any_value as fill

        message = AnyValue()
        try:
            fill(message, value)
        except ValueError:  # an int beyond int64 (OTLP has no uint64): its decimal string
            message = AnyValue(string_value=str(value))
        any_value = message.SerializeToString()
    kv = length_delimited(_KEY_TAG, key.encode()) + length_delimited(_VALUE_TAG, any_value)
    return length_delimited(_ATTRIBUTE_TAG, kv)


class RecordEncoder:
    """Encodes events as framed ``ScopeLogs.log_records`` entries. Its caches are plain dicts,
    safe to share between threads (each operation is atomic under the GIL; a lost race builds an
    encoding twice)."""

    def __init__(self, severity_number: int, severity_text: str, upstream_type_key: str) -> None:
        self._severity = (_SEVERITY_TAG + varint(severity_number)
                          + length_delimited(_SEVERITY_TEXT_TAG, severity_text.encode()))
        self._upstream_key = upstream_type_key
        self._pairs: dict[tuple[str, Any], bytes] = {}
        self._kinds: dict[tuple[str, str, str], tuple[bytes, bytes, bytes]] = {}
        self._int_prefixes: dict[str, tuple[bytes, ...]] = {}

    def _int_prefixes_of(self, key: str) -> tuple[bytes, ...]:
        """What precedes an int value's varint of n bytes in its attribute field, at index n
        (ten per key: the cache keeps a tenth as many keys as it keeps string pairs)."""
        if len(self._int_prefixes) >= MAX_CACHED_PAIRS // 10:
            self._int_prefixes.clear()
        key_field = length_delimited(_KEY_TAG, key.encode())
        prefixes = [b""]
        for size in range(1, 11):
            kv = key_field + _VALUE_TAG + varint(size + 1) + _INT_TAG
            prefixes.append(_ATTRIBUTE_TAG + varint(len(kv) + size) + kv)
        hit = self._int_prefixes[key] = tuple(prefixes)
        return hit

    def pair(self, pair: tuple[str, Any]) -> bytes:
        """An attribute's encoding. Strings are built once per distinct (key, value) while kept:
        only strings, since ``1 == 1.0 == True`` would let a cache keyed by value hand one the
        other's encoding. Non-negative ints (ports: tens of thousands of values) are written each
        time after their key's cached prefix, which costs less than caching them."""
        key, value = pair
        kind = type(value)
        if kind is str:
            hit = self._pairs.get(pair)
            if hit is None:
                if len(self._pairs) >= MAX_CACHED_PAIRS:
                    self._pairs.clear()
                hit = self._pairs[pair] = encode_pair(key, value)
            return hit
        if kind is int and 0 <= value <= _INT64_MAX:
            prefixes = self._int_prefixes.get(key) or self._int_prefixes_of(key)
            if 0x80 <= value < 0x200000:  # ports: the varint written inline
                if value < 0x4000:
                    return prefixes[2] + (value & 0x7F | 0x80 | (value >> 7) << 8).to_bytes(2, "little")
                return prefixes[3] + (value & 0x7F | 0x80 | (value >> 7 & 0x7F | 0x80) << 8
                                      | (value >> 14) << 16).to_bytes(3, "little")
            vb = varint(value)
            return prefixes[len(vb)] + vb
        return encode_pair(key, value)

    def _kind(self, name: str, upstream_type: str, body: str) -> tuple[bytes, bytes, bytes]:
        """The parts of a record fixed by its event: severity and body; the upstream type
        attribute and the tag of the observed time; ``event_name``. Bodies other than the name are rare (none today)."""
        if len(self._kinds) >= MAX_CACHED_PAIRS:
            self._kinds.clear()
        head = self._severity + length_delimited(_BODY_TAG, _string(body or name))
        hit = self._kinds[(name, upstream_type, body)] = (
            head, encode_pair(self._upstream_key, upstream_type) + _OBSERVED_TAG,
            length_delimited(_EVENT_NAME_TAG, name.encode()))
        return hit

    def record(self, name: str, upstream_type: str, body: str, attributes: Sequence[tuple[str, Any]],
               time_ns: int, observed_ns: int) -> bytes:
        """One event as a ``log_records`` entry (tag and length included), ready to join."""
        kind = self._kinds.get((name, upstream_type, body)) or self._kind(name, upstream_type, body)
        get, pair = self._pairs.get, self.pair
        # String attributes from the cache (the common case); the rest through pair().
        data = b"".join((_TIME_TAG, _TIME.pack(time_ns), kind[0],
                         *[get(kv) or pair(kv) if type(kv[1]) is str else pair(kv) for kv in attributes],
                         kind[1], _TIME.pack(observed_ns), kind[2]))
        size = len(data)
        return (_RECORD_TAG + _LENGTHS[size] if size < len(_LENGTHS) else _RECORD_TAG + varint(size)) + data


def resource_logs_head(resource: bytes, scope: InstrumentationScope) -> tuple[bytes, bytes]:
    """The fixed parts of one resource's ``ResourceLogs``: its ``resource`` field and its scope's
    ``scope`` field (``resource``: an encoded ``Resource`` message)."""
    return length_delimited(_RESOURCE_TAG, resource), length_delimited(_SCOPE_TAG, scope.SerializeToString())


def request_bytes(groups: Mapping[Any, tuple[tuple[bytes, bytes], list[bytes]]]) -> bytes:
    """An ``ExportLogsServiceRequest``: per resource, its head (:func:`resource_logs_head`) and
    its framed records, in the order given."""
    out = []
    for (resource, scope), records in groups.values():
        scope_logs = length_delimited(_SCOPE_LOGS_TAG, b"".join((scope, *records)))
        out.append(length_delimited(_RESOURCE_LOGS_TAG, resource + scope_logs))
    return b"".join(out)


class EncodedRequest:
    """An ``ExportLogsServiceRequest`` in wire form, handed to the log exporters: they send
    :meth:`SerializeToString`'s bytes as they are (HTTP) or parse them once (gRPC's stub takes a
    message)."""

    __slots__ = ("data", "records")

    def __init__(self, data: bytes, records: int) -> None:
        self.data = data
        self.records = records

    def SerializeToString(self) -> bytes:  # noqa: N802 (the protobuf message method it stands for)
        return self.data

    def message(self) -> ExportLogsServiceRequest:
        return ExportLogsServiceRequest.FromString(self.data)
