# SPDX-License-Identifier: Apache-2.0
"""tcpretrans without a kernel: the decoder against records recorded on Linux 6.18 (each kind),
and the per-kind samples."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import plans
from otel_kubeskoop.bpf.generated import tcpretrans as contract
from otel_kubeskoop.bpf.generated.common import TypecountKey
from otel_kubeskoop.bpf.generated.tcpretrans import TcpretransEvent
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import tcpretrans
from tests.unit.probes.bpfdumps import FakeMap, FakeObject, as_json, dumps, flow_tuple, read

PLANS = plans(contract.OBJECT)

A_NS = 4026532281


@pytest.mark.parametrize("path", dumps("tcpretrans"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(TcpretransEvent)
    assert records.to_dict(records.decode(TcpretransEvent, dump.raw)) == dump.record
    assert as_json(tcpretrans.TABLE.decode(dump.raw, dump.names, 0)) == dump.event


@pytest.mark.parametrize(
    ("kind", "state", "local_port"),
    [("syn", "syn_sent", None), ("synack", "syn_received", 7000), ("loss", "established", None),
     ("fast", "established", None)],
)
def test_each_kind(kind: str, state: str, local_port: int | None) -> None:
    dump = read(dumps("tcpretrans")[0].with_name(f"tcpretrans_{kind}_ipv4.dump"))
    event = tcpretrans.TABLE.decode(dump.raw, dump.names, 0)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.tcpretrans.retransmit", "TCPRetrans")
    assert got["kubeskoop.retransmit.type"] == kind
    assert got["network.connection.state"] == state
    assert got["source.address"] == ("10.231.0.2" if kind == "synack" else "10.231.0.1")
    if local_port:
        assert got["source.port"] == local_port


def test_wrong_size_and_unknown_type_are_decode_errors() -> None:
    dump = read(dumps("tcpretrans")[0])
    with pytest.raises(DecodeError, match="record of 64 bytes, expected 56"):
        tcpretrans.TABLE.decode(dump.raw + bytes(8), dump.names)
    rec = TcpretransEvent.from_buffer_copy(dump.raw)
    rec.hdr.type = 5
    with pytest.raises(DecodeError, match="unknown event type 5"):
        tcpretrans.TABLE.decode(bytes(rec), dump.names)


def test_samples_per_kind() -> None:
    ctx = ProbeContext(name="tcpretrans", cycle=Cycle(namespaces={A_NS: object()}))
    probe = tcpretrans.TcpretransProbe(None, ctx)
    probe.bpf.obj = FakeObject({
        "counters": FakeMap([(TypecountKey(A_NS, 1, 1), 2), (TypecountKey(A_NS, 1, 3), 4), (TypecountKey(A_NS, 1, 4), 1)]),
        "counters_full": FakeMap({0: 0}),
        "tuples": FakeMap([(flow_tuple("10.0.0.1", "10.0.0.2", 6, 40000, 80), 7)]),
        "tuples_inserted": FakeMap({0: 1}),
    })
    samples = probe.collect()
    (per_connection,) = [s for s in samples if s.instrument.name == "kubeskoop.tcpretrans.tuples"]
    assert (per_connection.value, per_connection.netns, dict(per_connection.attributes)["source.port"]) == (7, None, 40000)
    got = {(s.instrument.name, s.netns, s.attributes): s.value for s in samples
           if s.instrument.name == "kubeskoop.tcpretrans.total"}
    T = "kubeskoop.retransmit.type"
    assert got == {
        ("kubeskoop.tcpretrans.total", A_NS, ((T, "syn"),)): 2,
        ("kubeskoop.tcpretrans.total", A_NS, ((T, "loss"),)): 4,
        ("kubeskoop.tcpretrans.total", A_NS, ((T, "fast"),)): 1,
    }


def test_spec() -> None:
    assert tcpretrans.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert tcpretrans.TCPRETRANS_TUPLES.compat == "kubeskoop_tcpretrans_total" and not tcpretrans.TCPRETRANS_TUPLES.otlp
    assert [p.hook for p in PLANS] == ["retransmit", "synack"]
