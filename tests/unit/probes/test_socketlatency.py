# SPDX-License-Identifier: Apache-2.0
"""socketlatency without a kernel: records recorded on Linux 6.18 decode to their events; the
kernel's histograms become OTel histograms per direction and upstream's four counters; the
attach plans go tracepoint first, with fentry/kprobe fallbacks."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import AttachPoint, choose
from otel_kubeskoop.bpf.generated import socketlatency as contract
from otel_kubeskoop.bpf.generated.common import InflightStat
from otel_kubeskoop.bpf.generated.socketlatency import SocketlatencyEvent, SocketlatencyKey
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import member_plans
from otel_kubeskoop.probe import Cycle, Histogram, Kind, ProbeContext
from otel_kubeskoop.probes import socketlatency
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.bpfdumps import Dump, as_json, dumps, read
from tests.unit.probes.latencyfakes import Features, hist, latency_object, samples_by_key

PLANS = member_plans(contract.OBJECT)

A_NS = 4026532281
READ, WRITE = 1, 2
DIR = "network.io.direction"
PROBE = ("kubeskoop.probe", "socketlatency")


def points_of(dump: Dump) -> dict[int, tuple[str, str]]:
    """The attach points in use when the record was made (the dump's "kernel" part)."""
    kernel = json.loads(dump.path.read_text().partition("\n.\n")[2])["kernel"]
    return {int(k): (v[0], v[1]) for k, v in kernel["points"].items()}


@pytest.fixture
def recorded():
    return read


@pytest.mark.parametrize("path", dumps("socketlatency"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path, recorded) -> None:
    dump = recorded(path)
    assert len(dump.raw) == ctypes.sizeof(SocketlatencyEvent)
    assert records.to_dict(records.decode(SocketlatencyEvent, dump.raw)) == dump.record
    event = socketlatency.decode_socketlatency(dump.raw, dump.names, points_of(dump), 0)
    assert as_json(event) == dump.event


def test_read_and_send_events(recorded) -> None:
    read_dump = recorded(dumps("socketlatency_readslow")[0])
    event = socketlatency.decode_socketlatency(read_dump.raw, read_dump.names, points_of(read_dump), 7)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.socketlatency.readslow", "SOCKETLAT_READSLOW")
    assert event.timestamp_ns == read_dump.record["hdr"]["ts_ns"] + 7
    assert 0.2 <= got["kubeskoop.latency"] < 0.21
    assert got[DIR] == "receive" and got["network.connection.state"] == "established"
    assert (got["kubeskoop.latency.start"], got["kubeskoop.latency.end"]) == (
        "tp_btf/sk_data_ready", "tp_btf/sock_recv_length")

    send_dump = recorded(dumps("socketlatency_sendslow")[0])
    event = socketlatency.decode_socketlatency(send_dump.raw, send_dump.names, points_of(send_dump))
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.socketlatency.sendslow", "SOCKETLAT_SENDSLOW")
    assert got[DIR] == "transmit" and 0.15 <= got["kubeskoop.latency"] < 0.16
    assert got["process.pid"] > 0


def test_wrong_size_and_unknown_direction_are_decode_errors(recorded) -> None:
    dump = recorded(dumps("socketlatency")[0])
    with pytest.raises(DecodeError, match="record of 96 bytes, expected 88"):
        socketlatency.decode_socketlatency(dump.raw + bytes(8), dump.names, {})
    rec = SocketlatencyEvent.from_buffer_copy(dump.raw)
    rec.hdr.type = 3
    with pytest.raises(DecodeError, match="unknown event type 3"):
        socketlatency.decode_socketlatency(bytes(rec), dump.names, {})
    # No socket state, no pid, no comm: those attributes are left out.
    rec.hdr.type, rec.hdr.aux, rec.pid, rec.comm = READ, 0, 0, b""
    got = dict(socketlatency.decode_socketlatency(bytes(rec), dump.names, {}).attributes)
    assert not {"network.connection.state", "process.pid", "process.command"} & set(got)


def probe_with(entries, **kwargs) -> socketlatency.SocketlatencyProbe:
    ctx = ProbeContext(name="socketlatency", cycle=Cycle(namespaces={A_NS: object()}),
                       events_enabled=kwargs.pop("events", False))
    probe = socketlatency.SocketlatencyProbe(None, ctx)
    probe.bpf.obj = latency_object(entries, **kwargs)
    return probe


def test_histograms_per_direction_and_upstream_counters() -> None:
    reads = hist({17: 4, 27: 1}, sum_ns=4 * 150_000 + 200_000_000, slow=(1, 1))
    writes = hist({13: 9, 21: 2}, sum_ns=9 * 9000 + 2 * 3_000_000, slow=(2, 0))
    probe = probe_with([(SocketlatencyKey(A_NS, 3, READ), reads),
                        (SocketlatencyKey(A_NS, 3, WRITE), writes)])
    got = samples_by_key(probe.collect())
    receive = got[("kubeskoop.socketlatency.duration", A_NS, ((DIR, "receive"),))]
    assert receive == Histogram(BOUNDS, tuple(reads.slots), pytest.approx(0.2006))
    assert receive.bounds[26] == pytest.approx(0.134217728)  # slot 27: [134 ms, 268 ms)
    assert sum(got[("kubeskoop.socketlatency.duration", A_NS, ((DIR, "transmit"),))].counts) == 11
    assert {name.rsplit(".", 1)[1]: v for (name, ns, _), v in got.items()
            if ns == A_NS and not name.endswith("duration")} == {
        "read1ms": 1, "read100ms": 1, "write1ms": 2, "write100ms": 0}
    assert got[("kubeskoop.agent.bpf.map.full", None, (PROBE, ("kubeskoop.bpf.map", "hists")))] == 0


def test_inflight_evictions_and_event_losses() -> None:
    stats = {InflightStat.INFLIGHT_STARTED: 500, InflightStat.INFLIGHT_ENDED: 420,
             InflightStat.INFLIGHT_DISCARDED: 30, InflightStat.INFLIGHT_EVICTED: 5}
    probe = probe_with([], inflight=stats, losses=(0, 12), events=True)
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.agent.bpf.inflight.evicted", None, (PROBE, ("kubeskoop.bpf.map", "socks")))] == 5
    assert got[("kubeskoop.agent.events.lost", None, (PROBE, ("kubeskoop.loss.reason", "rate_limited")))] == 12
    assert got[("kubeskoop.agent.events.lost", None,
                (PROBE, ("kubeskoop.loss.reason", "ring_buffer_full")))] == 0


def test_attach_plans_go_tracepoint_first_with_function_fallbacks() -> None:
    order = ["tp_btf", "tracepoint", "fentry", "kprobe"]
    for plan in PLANS:
        kinds = [c.point.kind.value for c in plan.candidates]
        assert kinds == sorted(kinds, key=order.index), plan.hook
        assert kinds[0] == "tp_btf" and kinds[-2:] == ["fentry", "kprobe"]
    # A kernel with kprobes only (upstream's): every hook has a candidate.
    kprobes = Features(*(c.point.section for p in PLANS for c in p.candidates
                         if c.point.kind == "kprobe"))
    assert {p.hook: choose(p, kprobes).point for p in PLANS}["recv"] == AttachPoint(
        "kprobe", "tcp_cleanup_rbuf")
    points = socketlatency.endpoints({p.hook: choose(p, kprobes).point for p in PLANS})
    assert points[READ] == ("kprobe/sock_def_readable", "kprobe/tcp_cleanup_rbuf")
    assert points[WRITE] == ("kprobe/tcp_sendmsg_locked", "kprobe/__dev_queue_xmit")


def test_spec_and_args() -> None:
    spec = socketlatency.SPEC
    assert spec.kinds == {Kind.METRICS, Kind.EVENTS}
    assert spec.args().threshold_ns == 100_000_000  # upstream's 100 ms
    args = spec.args(thresholdMs=5, eventRate=10, eventBurst=20)
    assert (args.threshold_ns, args.event_rate, args.event_burst) == (5_000_000, 10, 20)
    with pytest.raises(ValidationError):
        spec.args(threshold=5)
    assert {i.compat for i in spec.instruments if i.compat} == {
        "kubeskoop_socketlatency_read1ms", "kubeskoop_socketlatency_read100ms",
        "kubeskoop_socketlatency_write1ms", "kubeskoop_socketlatency_write100ms"}
    assert set(contract.OBJECT.globals) == {"targ_emit", "targ_threshold_ns", "targ_rate_per_sec",
                                          "targ_burst", "targ_since_ns"}
    assert set(contract.OBJECT.rodata) == {"hists_mask"}
