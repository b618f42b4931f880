# SPDX-License-Identifier: Apache-2.0
"""The live event stream (telemetry/stream.py) with the watch client (watch.py), and top's rates
and table (top.py): filters, a stalled client that loses (counted, told) without slowing emit."""

from __future__ import annotations

import json
import socket
import threading
import time

from rich.console import Console

from otel_kubeskoop import top
from otel_kubeskoop.probe import Event
from otel_kubeskoop.telemetry.events import EventEmitter
from otel_kubeskoop.telemetry.stream import EventStream, Filters
from otel_kubeskoop.watch import NoAgent, follow, table_row
from otel_kubeskoop.vocabulary import attributes as A
from tests.helpers import Resources

PODS = {1: ("team-a", "web-1"), 2: ("team-b", "db-0")}


def resources():
    return Resources(lambda inode: {A.K8S_NAMESPACE_NAME: PODS[inode][0], A.K8S_POD_NAME: PODS[inode][1]}
                     if inode in PODS else {A.NETNS_INODE: inode or 0})


class Directory:
    def __init__(self):
        self._r = resources()

    def event_resource(self, inode):
        return self._r.resource(inode)


def event(netns, kind="nosock", upstream="TCPRESET_NOSOCK"):
    return Event(f"kubeskoop.tcpreset.{kind}", upstream, netns,
                 ((A.NETWORK_TRANSPORT, "tcp"), (A.SOURCE_ADDRESS, "10.0.0.1"), (A.SOURCE_PORT, 80),
                  (A.DESTINATION_ADDRESS, "10.0.0.2"), (A.DESTINATION_PORT, 5555)), timestamp_ns=time.time_ns())


def stream(tmp_path, **kw):
    emitter = EventEmitter(Directory(), [], [])
    server = EventStream(str(tmp_path / "events.sock"), emitter, lambda groups: {"rows": []}, **kw)
    server.start()
    return emitter, server


def test_watch_gets_only_what_its_filters_select(tmp_path):
    emitter, server = stream(tmp_path)
    got = []
    done = threading.Event()

    def client():
        for message in follow(server.path, {"mode": "events", "filters": {"pod": "web-1", "type": "TCPRESET_NOSOCK"}}):
            if "event" in message:
                got.append(message["event"])
                if len(got) == 2:
                    done.set()
                    return

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while not server._events and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        emitter.emit(event(2))  # another pod
        emitter.emit(event(1, "active", "TCPRESET_ACTIVE"))  # another type
        emitter.emit(event(1))
        emitter.emit(event(3))  # no pod
        emitter.emit(event(1))
        assert done.wait(5)
    finally:
        thread.join(5)
        server.stop()
    assert [(g["resource"][A.K8S_POD_NAME], g["type"]) for g in got] == [("web-1", "TCPRESET_NOSOCK")] * 2
    assert got[0]["attributes"]["kubeskoop.event.type"] == "TCPRESET_NOSOCK"
    when, who, type_, tuple_, _ = table_row(got[0])
    assert (who, type_, tuple_) == ("team-a/web-1", "TCPRESET_NOSOCK", "tcp 10.0.0.1:80 -> 10.0.0.2:5555")


def emit_cost(emitter, n):
    e = event(1)
    t0 = time.perf_counter()
    for _ in range(n):
        emitter.emit(e)
    return (time.perf_counter() - t0) / n


def test_a_stalled_client_loses_counted_and_told_and_does_not_slow_emit(tmp_path):
    emitter, server = stream(tmp_path, client_queue=1000)
    try:
        alone = min(emit_cost(emitter, 20000) for _ in range(3))
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(server.path)
        stalled.sendall(b'{"mode": "events"}\n')
        deadline = time.monotonic() + 5
        while not server._events and time.monotonic() < deadline:
            time.sleep(0.01)
        n = 200000
        with_stalled = min(emit_cost(emitter, n // 4) for _ in range(4))
        client = server._events[0]
        assert client.dropped > n // 2  # the socket buffer and the queue hold the rest
        assert server.samples()[1].value == client.dropped
        # A bounded cost: the hook appends or counts, never waits for the client.
        assert with_stalled < alone + 10e-6, (alone, with_stalled)
        stalled.settimeout(5)
        reader = stalled.makefile("rb")
        lost = None
        for _ in range(n):
            message = json.loads(reader.readline())
            if "lost" in message:
                lost = message
                break
        assert lost is not None and lost["total_lost"] == lost["lost"] > 0
    finally:
        server.stop()
    assert server.samples()[0].value == 0  # no clients after stop


def greeted(path, mode):
    """A client connected in ``mode``, once the agent has said hello."""
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    client.sendall(json.dumps({"mode": mode}).encode() + b"\n")
    assert json.loads(client.makefile("rb").readline())["hello"]["mode"] == mode
    return client


def test_clients_are_bounded(tmp_path):
    emitter, server = stream(tmp_path, max_clients=1)
    try:
        first = greeted(server.path, "top")
        try:
            list(follow(server.path, {"mode": "events"}))
            raise AssertionError("a second client was let in")
        except NoAgent as exc:
            assert "too many clients" in str(exc)
        first.close()
    finally:
        server.stop()


def test_top_rates_p99_and_sorting():
    rates = top.Rates()
    bounds = [0.001, 0.002, 0.004]
    first = {"columns": ["drops", "retrans", "conntrack", "read_latency"], "rows": [
        {"namespace": "a", "pod": "web", "drops": {"NO_SOCKET": 10}, "retrans": 5, "conntrack": 7,
         "read_latency": {"bounds": bounds, "counts": [0, 0, 0, 0]}},
        {"name": "netns:9", "netns": 9, "retrans": 0}]}
    second = {"columns": first["columns"], "rows": [
        {"namespace": "a", "pod": "web", "drops": {"NO_SOCKET": 30, "TCP_CSUM": 11}, "retrans": 25, "conntrack": 9,
         "read_latency": {"bounds": bounds, "counts": [90, 9, 1, 0]}},
        {"name": "netns:9", "netns": 9, "retrans": 100}]}
    rates.update(first, now=0.0)
    rows = rates.update(second, now=2.0)
    web = next(r for r in rows if r.name == "a/web")
    assert web.values == {"conntrack": 9, "retrans": 10.0, "drops": 15.5, "read_p99": 0.002}
    assert web.top_reason == "NO_SOCKET"
    assert rates.columns == ["drops", "retrans", "conntrack", "read_p99"]
    console = Console(width=160, record=True)
    console.print(top.render(rows, rates.columns, "retrans"))
    text = console.export_text()
    assert text.index("netns:9") < text.index("a/web")  # 50/s before 10/s
    assert "15.5 (NO_SOCKET)" in text and "2.00 ms" in text
    assert top.next_sort("retrans", rates.columns) == "conntrack"


def test_a_client_that_went_away_leaves_its_place_with_no_event_sent_one_that_only_stopped_writing_stays(tmp_path):
    emitter, server = stream(tmp_path, max_clients=1)
    try:
        first = greeted(server.path, "events")
        assert server.samples()[0].value == 1
        first.close()
        deadline = time.monotonic() + 5
        while server.samples()[0].value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.samples()[0].value == 0
        half = greeted(server.path, "events")
        half.shutdown(socket.SHUT_WR)  # done talking, still reading
        time.sleep(1.5)
        assert server.samples()[0].value == 1
        emitter.emit(event(1))
        half.settimeout(5)
        assert "event" in json.loads(half.makefile("rb").readline())
        half.close()
    finally:
        server.stop()


def test_type_filter_takes_upstream_names_and_ours():
    resource = Directory().event_resource(1)
    for name, accepted in (("TCPRESET_NOSOCK", True), ("kubeskoop.tcpreset.nosock", True), ("nosock", True),
                           ("TCPRESET_ACTIVE", False), ("active", False), ("tcpreset", False)):
        assert Filters.of({"type": name}).accepts(event(1), resource) is accepted, name
    assert Filters.of({"probe": "tcpreset", "netns": "1"}).accepts(event(1), resource)
    assert not Filters.of({"probe": "packetloss"}).accepts(event(1), resource)
