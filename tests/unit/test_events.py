# SPDX-License-Identifier: Apache-2.0
"""The event path, with a synthetic event: per-record resource, event_name, typed attributes, JSON lines."""

import io
import json

import pytest

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.resources import Resource

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Event
from otel_kubeskoop.telemetry.events import EventEmitter, LineSink
from tests.otlp_receiver import OTLPReceiver

RES = {None: Resource({"k8s.node.name": "n1"}), 7: Resource({"kubeskoop.netns.inode": 7, "k8s.node.name": "n1"})}

SYNTH = Event(
    name="kubeskoop.test.synthetic",
    upstream_type="TEST_SYNTHETIC",
    netns=7,
    attributes=(("network.transport", "tcp"), ("network.type", "ipv6"), ("source.address", "fd00::1"),
                ("source.port", 40000), ("destination.address", "fd00::2"), ("destination.port", 80)),
    body="synthetic",
    timestamp_ns=1_700_000_000_000_000_000,
)


def test_event_becomes_log_record_with_its_namespace_resource():
    mem = InMemoryLogRecordExporter()
    emitter = EventEmitter(RES.get, [mem], [], RES[None])
    emitter.emit(SYNTH)
    emitter.emit(Event("kubeskoop.test.node", "TEST_NODE", None))
    emitter.flush()
    records = mem.get_finished_logs()
    assert len(records) == 2
    pod, node = records
    assert pod.log_record.event_name == "kubeskoop.test.synthetic"
    assert dict(pod.resource.attributes) == {"kubeskoop.netns.inode": 7, "k8s.node.name": "n1"}
    assert dict(node.resource.attributes) == {"k8s.node.name": "n1"}
    attrs = dict(pod.log_record.attributes)
    assert attrs["source.port"] == 40000 and isinstance(attrs["source.port"], int)
    assert attrs["kubeskoop.event.type"] == "TEST_SYNTHETIC"
    assert pod.log_record.timestamp == SYNTH.timestamp_ns
    assert pod.log_record.severity_number.name == "WARN"
    emitter.shutdown()


def test_json_line_sink():
    out = io.StringIO()
    emitter = EventEmitter(RES.get, [], [LineSink("stdout", out)], RES[None])
    emitter.emit(SYNTH)
    line = json.loads(out.getvalue())
    assert line["event_name"] == "kubeskoop.test.synthetic" and line["type"] == "TEST_SYNTHETIC"
    assert line["resource"]["kubeskoop.netns.inode"] == 7
    assert line["attributes"]["destination.port"] == 80
    assert out.getvalue().count("\n") == 1


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_agent_sends_events_over_otlp_with_the_namespace_resource(protocol):
    with OTLPReceiver() as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        config = parse({"address": "", "nodeName": "n1", "otlp": {"endpoint": endpoint, "protocol": protocol}},
                       "t", environ={})
        agent = Agent(config)
        try:
            agent.emit(SYNTH)
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
