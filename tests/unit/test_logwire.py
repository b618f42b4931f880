# SPDX-License-Identifier: Apache-2.0
"""Log records written in wire form (``telemetry/logwire.py``) against the official
opentelemetry-proto types: the emitter's requests are the messages the types build from the same
events (the emitter built them that way before), field for field and byte for byte."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.probe import Event
from otel_kubeskoop.telemetry.events import UPSTREAM_TYPE, WARN, EventEmitter
from otel_kubeskoop.telemetry.logwire import RecordEncoder, encode_pair, varint
from otel_kubeskoop.telemetry.pipeline import key_values
from tests.eventref import logs_request
from tests.helpers import MemoryLogExporter

RESOURCES = {
    None: Resource({"k8s.node.name": "n1", "service.name": "otel-kubeskoop"}),
    7: Resource({"kubeskoop.netns.inode": 7, "k8s.pod.name": "web-0", "k8s.namespace.name": "shop"}),
    8: Resource({"kubeskoop.netns.inode": 8, "k8s.pod.name": "db-0", "k8s.pod.start_time": 1.5}),
}
VALUES = ["tcp", "", "fd00::1", "é ü 漢", "x" * 300, 0, 1, 127, 128, 16383, 16384, 65535, 2**40,
          2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63), True, False, 0.0, 2.5, -1e300,
          ("tcp_v4_rcv+0x1a", "ip_local_deliver+0x7"), ["a", 1], ()]
ENCODABLE_BEFORE = [v for v in VALUES if not (type(v) is int and v >= 2**63)]  # the old path raised


def random_events(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        attrs = tuple((f"k{rng.randrange(12)}", rng.choice(ENCODABLE_BEFORE)) for _ in range(rng.randrange(10)))
        events.append(Event(f"kubeskoop.probe{rng.randrange(3)}.kind{rng.randrange(3)}", f"TYPE_{rng.randrange(4)}",
                            rng.choice([None, 7, 8]), attrs, rng.choice(["", "", "a body"]),
                            rng.choice([0, 1_700_000_000_123_456_789, 2**64 - 1])))
    return events


def test_every_value_kind_encodes_as_the_official_types_do():
    attribute_tag = bytes([LogRecord.DESCRIPTOR.fields_by_name["attributes"].number << 3 | 2])
    encoder = RecordEncoder(WARN, "WARN", UPSTREAM_TYPE)
    for value in VALUES:
        for key in ("source.port", "k" * 200):
            (kv,) = key_values(((key, value),)) if not (type(value) is int and value >= 2**63) else \
                key_values(((key, str(value)),))  # beyond int64: its decimal string
            expected = attribute_tag + varint(kv.ByteSize()) + kv.SerializeToString()
            assert encode_pair(key, value) == expected, (key, value)
            assert encoder.pair((key, value)) == expected, (key, value)
            assert encoder.pair((key, value)) == expected, (key, value)  # cached


def test_varint():
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1, 2**64 - 1):
        encoded = varint(value)
        decoded, shift = 0, 0
        for byte in encoded:
            decoded |= (byte & 0x7F) << shift
            shift += 7
        assert decoded == value and all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80


def test_varint_and_int_pairs_of_every_port_as_the_official_types_write_them():
    def reference(value: int) -> bytes:
        out = bytearray()
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        return bytes((*out, value))

    encoder = RecordEncoder(WARN, "WARN", UPSTREAM_TYPE)
    for value in (*range(0x10000), 0x1FFFFF, 0x200000, 0x200001):
        assert varint(value) == reference(value), value
    attribute_tag = bytes([LogRecord.DESCRIPTOR.fields_by_name["attributes"].number << 3 | 2])
    for value in (*range(0, 0x10000, 97), 127, 128, 16383, 16384, 65535, 0x1FFFFF, 0x200000):
        (kv,) = key_values((("source.port", value),))
        assert encoder.pair(("source.port", value)) == attribute_tag + varint(kv.ByteSize()) + kv.SerializeToString()


def emitted_request(events: list[Event], observed_ns: int, monkeypatch) -> ExportLogsServiceRequest:
    monkeypatch.setattr(time, "time_ns", lambda: observed_ns)
    mem = MemoryLogExporter()
    emitter = EventEmitter(SimpleNamespace(event_resource=RESOURCES.get), [mem], [], batch_size=10_000,
                           flush_interval=3600)
    for at in range(0, len(events), 37):  # batches of several sizes, as ring-buffer reads come
        emitter.emit_batch(events[at:at + 37])
    emitter.flush()
    emitter.shutdown()
    (request,) = mem.requests
    return request


def test_requests_are_the_messages_the_official_types_build(monkeypatch):
    events = random_events(2000, seed=1)
    observed = 1_800_000_000_000_000_000
    got = emitted_request(events, observed, monkeypatch)
    # the emitter groups by resource in order of first appearance, as the reference does
    expected = logs_request(events, RESOURCES.get, observed)
    assert got == expected
    assert got.SerializeToString() == expected.SerializeToString()
    assert sum(len(sl.log_records) for rl in got.resource_logs for sl in rl.scope_logs) == 2000


def test_the_cache_never_mixes_values_that_compare_equal():
    # 1 == 1.0 == True in Python: a cache keyed by value alone would hand one the other's encoding
    encoder = RecordEncoder(WARN, "WARN", UPSTREAM_TYPE)
    for value in (1.0, True, 1, 1.0, True, 0, False, 0.0):
        assert encoder.pair(("k", value)) == encode_pair("k", value), value
