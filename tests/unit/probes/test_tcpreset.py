# SPDX-License-Identifier: Apache-2.0
"""tcpreset without a kernel: the decoder against records recorded on Linux 6.18 (each reset
type, IPv4 and IPv6), the per-type samples, and the state and reason names."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import plans
from otel_kubeskoop.bpf.generated import tcpreset as contract
from otel_kubeskoop.bpf.generated.common import TypecountKey
from otel_kubeskoop.bpf.generated.tcpreset import TcpresetEvent
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import tcpreset
from otel_kubeskoop.probes._decode import KernelNames, tcp_state
from tests.unit.probes.bpfdumps import FakeMap, FakeObject, as_json, dumps, read

PLANS = plans(contract.OBJECT)

A_NS = 4026532281


@pytest.mark.parametrize("path", dumps("tcpreset"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(TcpresetEvent)
    assert records.to_dict(records.decode(TcpresetEvent, dump.raw)) == dump.record
    assert as_json(tcpreset.TABLE.decode(dump.raw, dump.names, 0)) == dump.event


@pytest.mark.parametrize(
    ("case", "name", "upstream", "state", "reason"),
    [
        ("nosock_ipv4", "kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK", None, "NO_SOCKET"),
        ("nosock_ipv6", "kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK", None, "NO_SOCKET"),
        ("process_ipv4", "kubeskoop.tcpreset.process", "TCPRESET_PROCESS", "listen", "TCP_FLAGS"),
        ("active_ipv4", "kubeskoop.tcpreset.active", "TCPRESET_ACTIVE", "closed", "TCP_STATE"),
        ("receive_ipv4", "kubeskoop.tcpreset.receive", "TCPRESET_RECEIVE", "syn_sent", None),
    ],
)
def test_each_type(case: str, name: str, upstream: str, state: str | None, reason: str | None) -> None:
    dump = read(dumps("tcpreset")[0].with_name(f"tcpreset_{case}.dump"))
    event = tcpreset.TABLE.decode(dump.raw, dump.names, 5)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == (name, upstream)
    assert event.timestamp_ns == dump.record["hdr"]["ts_ns"] + 5
    assert got.get("network.connection.state") == state
    assert got.get("kubeskoop.reset.reason") == reason
    assert got["kubeskoop.reset.type"] == name.rsplit(".", 1)[1]
    assert got["network.transport"] == "tcp"
    assert got["network.type"] == ("ipv6" if case.endswith("ipv6") else "ipv4")
    assert got["source.port"] > 0 and got["destination.port"] > 0


def test_wrong_size_and_unknown_type_are_decode_errors() -> None:
    dump = read(dumps("tcpreset")[0])
    with pytest.raises(DecodeError, match="record of 63 bytes, expected 64"):
        tcpreset.TABLE.decode(dump.raw[:-1], dump.names)
    rec = TcpresetEvent.from_buffer_copy(dump.raw)
    rec.hdr.type = 0
    with pytest.raises(DecodeError, match="unknown event type 0"):
        tcpreset.TABLE.decode(bytes(rec), dump.names)


def test_a_reason_this_kernel_does_not_name_is_left_out() -> None:
    dump = read(dumps("tcpreset")[0].with_name("tcpreset_nosock_ipv4.dump"))
    got = dict(tcpreset.TABLE.decode(dump.raw, KernelNames(), 0).attributes)
    assert "kubeskoop.reset.reason" not in got  # a kernel before 6.10 has no enum sk_rst_reason


def test_samples_per_type() -> None:
    ctx = ProbeContext(name="tcpreset", cycle=Cycle(namespaces={A_NS: object()}))
    probe = tcpreset.TcpresetProbe(None, ctx)
    probe.bpf.obj = FakeObject({
        "counters": FakeMap([(TypecountKey(A_NS, 1, 1), 3), (TypecountKey(A_NS, 1, 4), 3), (TypecountKey(A_NS, 1, 3), 1)]),
        "counters_full": FakeMap({0: 0}),
    })
    got = {(s.instrument.name, s.netns, s.attributes): s.value for s in probe.collect()}
    T = "kubeskoop.reset.type"
    assert got == {
        ("kubeskoop.tcpreset.total", A_NS, ((T, "nosock"),)): 3,
        ("kubeskoop.tcpreset.total", A_NS, ((T, "receive"),)): 3,
        ("kubeskoop.tcpreset.total", A_NS, ((T, "active"),)): 1,
        ("kubeskoop.agent.bpf.map.full", None, (("kubeskoop.probe", "tcpreset"), ("kubeskoop.bpf.map", "counters"))): 0,
    }
    probe.stop()
    probe.stop()
    assert probe.collect() == []


def test_tcp_state_names_follow_semconv() -> None:
    assert [tcp_state(n) for n in ("TCP_ESTABLISHED", "TCP_SYN_RECV", "TCP_NEW_SYN_RECV", "TCP_FIN_WAIT1",
                                   "TCP_CLOSE", "TCP_BOUND_INACTIVE")] == [
        "established", "syn_received", "syn_received", "fin_wait_1", "closed", "bound_inactive"]
    names = KernelNames(tcp_states={1: "TCP_ESTABLISHED"})
    assert names.tcp_state(0) is None and names.tcp_state(1) == "established"
    assert names.tcp_state(42) == "unknown:42"
    assert KernelNames(rst_reasons={1: "SK_RST_REASON_NO_SOCKET"}).rst_reason(1) == "NO_SOCKET"


def test_spec() -> None:
    assert tcpreset.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert [p.hook for p in PLANS] == ["send", "receive"]
    assert tcpreset.SPEC.args().event_rate == 100
