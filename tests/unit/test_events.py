# SPDX-License-Identifier: Apache-2.0
"""The event path, with a synthetic event: per-record resource, event_name, typed attributes, JSON lines."""

import io
import json
from types import SimpleNamespace

import pytest

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Event
from otel_kubeskoop.telemetry.events import EventEmitter, LineSink
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
    emitter = EventEmitter(DIRECTORY, [mem], [], queue_size=5, batch_size=100, flush_interval=3600)
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
