# SPDX-License-Identifier: Apache-2.0
"""The event path, with a synthetic event: per-record resource, event_name, typed attributes, JSON lines."""

import io
import json
import time
from types import SimpleNamespace

import pytest

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Event
from otel_kubeskoop.telemetry.events import ENTRY_OVERHEAD, UPSTREAM_TYPE, WARN, EventEmitter, LineSink
from otel_kubeskoop.telemetry.logwire import RecordEncoder
from tests.helpers import MemoryLogExporter
from tests.otlp_receiver import OTLPReceiver, decode_attributes

RES = {None: Resource({"k8s.node.name": "n1"}), 7: Resource({"kubeskoop.netns.inode": 7, "k8s.node.name": "n1"})}
DIRECTORY = SimpleNamespace(event_resource=RES.get)  # the resource directory's part the emitter uses

SYNTH = Event(
    name="kubeskoop.test.synthetic",
    upstream_type="TEST_SYNTHETIC",
    netns=7,
    attributes=(("network.transport", "tcp"), ("network.type", "ipv6"), ("source.address", "fd00::1"),
                ("source.port", 40000), ("destination.address", "fd00::2"), ("destination.port", 80)),
    body="synthetic",
    timestamp_ns=1_700_000_000_000_000_000,
)


def records(exp):
    return [(decode_attributes(rl.resource.attributes), r) for req in exp.requests
            for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]


def test_events_become_log_records_grouped_by_their_namespace_resource():
    mem = MemoryLogExporter()
    emitter = EventEmitter(DIRECTORY, [mem], [])
    emitter.emit(SYNTH)
    emitter.emit(Event("kubeskoop.test.node", "TEST_NODE", None))
    emitter.emit(SYNTH)
    emitter.flush()
    (request,) = mem.requests
    assert [decode_attributes(rl.resource.attributes) for rl in request.resource_logs] == [
        {"kubeskoop.netns.inode": 7, "k8s.node.name": "n1"}, {"k8s.node.name": "n1"}]
    got = records(mem)
    assert [r.event_name for _, r in got] == ["kubeskoop.test.synthetic"] * 2 + ["kubeskoop.test.node"]
    _, rec = got[0]
    attrs = decode_attributes(rec.attributes)
    assert attrs["source.port"] == 40000 and attrs["network.type"] == "ipv6"
    assert attrs["kubeskoop.event.type"] == "TEST_SYNTHETIC"
    assert rec.time_unix_nano == SYNTH.timestamp_ns and rec.observed_time_unix_nano >= rec.time_unix_nano
    assert rec.severity_number == 13 and rec.body.string_value == "synthetic"
    assert request.resource_logs[0].scope_logs[0].scope.name == "otel_kubeskoop.probes"
    assert emitter.delivered == {"test": 3} and not emitter.lost
    emitter.shutdown()


def test_list_attributes_become_arrays():
    mem = MemoryLogExporter()
    emitter = EventEmitter(DIRECTORY, [mem], [])
    emitter.emit(Event("kubeskoop.test.stack", "T", 7, (("kubeskoop.stack", ("tcp_v4_rcv+0x1a", "ip_local_deliver+0x7")),)))
    emitter.emit(Event("kubeskoop.test.stack", "T", 7, (("kubeskoop.stack", ["tcp_v4_rcv+0x1a"]),)))  # unhashable
    emitter.flush()
    (_, first), (_, second) = records(mem)
    assert decode_attributes(first.attributes)["kubeskoop.stack"] == ["tcp_v4_rcv+0x1a", "ip_local_deliver+0x7"]
    assert decode_attributes(second.attributes)["kubeskoop.stack"] == ["tcp_v4_rcv+0x1a"]
    emitter.shutdown()


def test_every_event_is_delivered_or_counted_lost():
    mem = MemoryLogExporter()
    encoder = RecordEncoder(WARN, "WARN", UPSTREAM_TYPE)  # the emitter's, as it queues a record
    one = len(encoder.record(SYNTH.name, SYNTH.upstream_type, SYNTH.body, SYNTH.attributes, 1, 1)) + ENTRY_OVERHEAD
    emitter = EventEmitter(DIRECTORY, [mem], [], queue_bytes=5 * one, batch_size=100, flush_interval=3600)
    for _ in range(20):
        emitter.emit(SYNTH)
    emitter.flush()
    assert emitter.delivered["test"] == 5 and emitter.lost[("test", "export_queue_full")] == 15
    mem.fail = True
    for _ in range(3):
        emitter.emit(SYNTH)
    emitter.flush()
    assert emitter.lost[("test", "export_failed")] == 3
    samples = {(s.instrument.name, s.attributes): s.value for s in emitter.samples()}
    assert samples[("kubeskoop.agent.events.delivered", (("kubeskoop.probe", "test"),))] == 5
    assert samples[("kubeskoop.agent.events.lost", (("kubeskoop.probe", "test"), ("kubeskoop.loss.reason", "export_queue_full")))] == 15
    emitter.shutdown()


class BlackHole(MemoryLogExporter):
    """Holds each request for its whole timeout, as a backend that accepts and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def export_request(self, request, timeout=None) -> bool:
        self.timeouts.append(timeout)
        time.sleep(5 if timeout is None else timeout)
        return False


def test_shutdown_is_cut_at_its_deadline_and_what_is_left_is_counted_lost():
    hole = BlackHole()
    emitter = EventEmitter(DIRECTORY, [hole], [], batch_size=10, flush_interval=3600)
    for _ in range(35):
        emitter.emit(SYNTH)
    t0 = time.monotonic()
    emitter.shutdown(deadline=t0 + 1.0)
    took = time.monotonic() - t0
    assert took < 2.0, f"shutdown took {took:.1f}s past a 1s deadline"
    assert hole.timeouts[0] is None, "a batch was already being sent (the exporter's own timeout)"
    assert all(t is not None and t <= 1.0 for t in hole.timeouts[1:])
    assert emitter.delivered["test"] == 0
    assert emitter.lost[("test", "shutdown")] + emitter.lost[("test", "export_failed")] == 35
    assert emitter.lost[("test", "shutdown")] >= 25, "everything still queued at the deadline is counted"
    emitter.emit(SYNTH)
    assert emitter.lost[("test", "shutdown")] + emitter.lost[("test", "export_failed")] == 36
    status = emitter.status()
    assert status["probes"]["test"]["lost"]["shutdown"] == emitter.lost[("test", "shutdown")]


def test_the_queue_is_bounded_in_bytes_and_empties_after_a_backlog():
    mem = MemoryLogExporter()
    emitter = EventEmitter(DIRECTORY, [mem], [], queue_bytes=64 << 10, batch_size=500, flush_interval=3600)
    for _ in range(10_000):
        emitter.emit(SYNTH)
    assert emitter.queued_bytes <= 64 << 10
    kept = sum(emitter.status()["queued"] for _ in (0,))
    assert emitter.lost[("test", "export_queue_full")] == 10_000 - kept
    emitter.flush()
    assert emitter.queued_bytes == 0 and emitter.delivered["test"] == kept
    emitter.shutdown()


def test_json_line_sink():
    out = io.StringIO()
    emitter = EventEmitter(DIRECTORY, [], [LineSink("stdout", out)])
    emitter.emit(SYNTH)
    line = json.loads(out.getvalue())
    assert line["event_name"] == "kubeskoop.test.synthetic" and line["type"] == "TEST_SYNTHETIC"
    assert line["resource"]["kubeskoop.netns.inode"] == 7
    assert line["attributes"]["destination.port"] == 80
    assert out.getvalue().count("\n") == 1
    assert emitter.delivered == {"test": 1}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_agent_sends_events_over_otlp_with_the_namespace_resource(protocol):
    with OTLPReceiver() as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        config = parse({"address": "", "nodeName": "n1", "otlp": {"endpoint": endpoint, "protocol": protocol}},
                       "t", environ={})
        agent = Agent(config)
        try:
            agent.events.emit(SYNTH)  # what a probe's ctx.emit is
            agent.events.flush()
            rx.wait_log_requests(1)
            (rec,) = rx.log_records(event_name="kubeskoop.test.synthetic")
            assert rec.resource["kubeskoop.netns.inode"] == 7 and rec.resource["k8s.node.name"] == "n1"
            assert rec.resource["service.instance.id"] == "n1.netns-7"
            assert rec.attributes["source.port"] == 40000 and rec.attributes["network.type"] == "ipv6"
            assert rec.attributes["kubeskoop.event.type"] == "TEST_SYNTHETIC"
            assert rec.time_unix_nano == SYNTH.timestamp_ns and rec.severity_number == 13
        finally:
            agent.stop()
