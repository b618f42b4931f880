# SPDX-License-Identifier: Apache-2.0
"""tcpconnect without a kernel: the kernel's counts per (namespace, outcome) become attempts and
failures by error.type; the connect-latency histogram becomes seconds; a failure record becomes
its event with the drop reason linked; the probe joins the shared object on its hooks."""

from __future__ import annotations

import socket

import pytest

from otel_kubeskoop.bpf.generated import datapath
from otel_kubeskoop.bpf.generated import tcpconnect as contract
from otel_kubeskoop.bpf.generated.common import EventHeader, TypecountKey
from otel_kubeskoop.bpf.generated.tcpconnect import TcpconnectEvent, TcpconnectKey
from otel_kubeskoop.bpf.generated.tcpconnect import TcpconnectOutcome as O
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import SharedObject
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import tcpconnect
from otel_kubeskoop.probes._decode import KernelNames
from tests.unit.probes.bpfdumps import FakeMap, flow_tuple
from tests.unit.probes.remotefakes import remote_maps
from tests.unit.probes.latencyfakes import hist, latency_object, samples_by_key

A_NS, B_NS = 4026532281, 4026532282
NAMES = KernelNames(drop_reasons={6: "SKB_DROP_REASON_NETFILTER_DROP"},
                    tcp_states={1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 7: "TCP_CLOSE"})
PROBE = ("kubeskoop.probe", "tcpconnect")


def probe_with(counts, hists=()) -> tcpconnect.TcpconnectProbe:
    ctx = ProbeContext(name="tcpconnect", cycle=Cycle(namespaces={A_NS: object(), B_NS: object()}))
    probe = tcpconnect.TcpconnectProbe(None, ctx)
    obj = latency_object(list(hists))
    obj.maps["counters"] = FakeMap([(TypecountKey(ns, 3, outcome), n) for ns, outcome, n in counts])
    obj.maps["counters_full"] = FakeMap({0: 1})
    obj.maps.update(remote_maps()[1])
    probe.bpf.obj = obj
    return probe


def test_attempts_failures_by_cause_and_connect_latency() -> None:
    probe = probe_with([(A_NS, O.TCPCONNECT_ATTEMPT, 9), (A_NS, O.TCPCONNECT_ESTABLISHED, 4),
                        (A_NS, O.TCPCONNECT_REFUSED, 3), (A_NS, O.TCPCONNECT_DROPPED, 1),
                        (A_NS, O.TCPCONNECT_RESET, 2), (B_NS, O.TCPCONNECT_TIMEOUT, 1)],
                       [(TcpconnectKey(A_NS, 3), hist({24: 4}, sum_ns=4 * 21_000_000))])
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.tcpconnect.attempts", A_NS, ())] == 9
    failures = {(ns, dict(attrs)["error.type"]): v for (name, ns, attrs), v in got.items()
                if name == "kubeskoop.tcpconnect.failures"}
    # ESTABLISHED is the histogram's count, not a failure.
    assert failures == {(A_NS, "refused"): 3, (A_NS, "dropped"): 1, (A_NS, "reset"): 2,
                        (B_NS, "timed_out"): 1}
    duration = got[("kubeskoop.tcpconnect.duration", A_NS, ())]
    assert sum(duration.counts) == 4 and duration.sum == pytest.approx(0.084)
    assert got[("kubeskoop.agent.bpf.map.full", None, (PROBE, ("kubeskoop.bpf.map", "counters")))] == 1
    assert got[("kubeskoop.agent.bpf.inflight.evicted", None,
                (PROBE, ("kubeskoop.bpf.map", "socks")))] == 0


def record(outcome: int, **fields) -> bytes:
    rec = TcpconnectEvent(hdr=EventHeader(ts_ns=1000, netns=A_NS, type=outcome, aux=2),
                          tuple=flow_tuple("10.231.0.1", "10.231.0.2", socket.IPPROTO_TCP,
                                           40000, 5302),
                          drop_reason=0xFFFFFFFF)
    for name, value in fields.items():
        setattr(rec, name, value)
    return bytes(rec)


def test_a_dropped_connect_carries_its_drop_reason() -> None:
    raw = record(O.TCPCONNECT_DROPPED, error=110, duration_ns=3_000_000_000, drops=3,
                 drop_reason=6, syns=2)
    event = tcpconnect.decode_tcpconnect(raw, NAMES, 5)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type, event.netns) == (
        "kubeskoop.tcpconnect.dropped", "TCPCONNECT_DROPPED", A_NS)
    assert event.timestamp_ns == 1005
    assert got["error.type"] == "dropped" and got["kubeskoop.tcpconnect.errno"] == "ETIMEDOUT"
    assert got["kubeskoop.drop.reason"] == "NETFILTER_DROP"
    assert (got["kubeskoop.tcpconnect.syn_drops"], got["kubeskoop.tcpconnect.syn_retransmits"]) == (3, 2)
    assert got["kubeskoop.latency"] == 3.0
    assert got["network.connection.state"] == "syn_sent"
    assert (got["destination.address"], got["destination.port"]) == ("10.231.0.2", 5302)


def test_resets_and_aborts_leave_out_what_they_lack() -> None:
    got = dict(tcpconnect.decode_tcpconnect(record(O.TCPCONNECT_RESET, error=104), NAMES).attributes)
    assert got["error.type"] == "reset" and got["kubeskoop.tcpconnect.errno"] == "ECONNRESET"
    assert not {"kubeskoop.latency", "kubeskoop.drop.reason", "kubeskoop.tcpconnect.syn_drops"} & set(got)
    got = dict(tcpconnect.decode_tcpconnect(record(O.TCPCONNECT_ABORTED), NAMES).attributes)
    assert got["error.type"] == "aborted" and "kubeskoop.tcpconnect.errno" not in got


def test_records_that_are_no_failure_are_refused() -> None:
    with pytest.raises(ValueError, match="not a failure"):
        tcpconnect.decode_tcpconnect(record(O.TCPCONNECT_ATTEMPT), NAMES)
    with pytest.raises(DecodeError, match="unknown event type 99"):
        tcpconnect.decode_tcpconnect(record(99), NAMES)
    with pytest.raises(DecodeError):
        tcpconnect.decode_tcpconnect(record(O.TCPCONNECT_REFUSED) + bytes(8), NAMES)


def test_spec_joins_the_shared_object_on_state_and_free() -> None:
    spec = tcpconnect.SPEC
    assert spec.kinds == {Kind.METRICS, Kind.EVENTS}
    assert {e.name for e in spec.events} == {
        f"kubeskoop.tcpconnect.{w}" for w in tcpconnect.ERROR_TYPES.values()}
    assert all(i.compat is None for i in spec.instruments)
    assert contract.OBJECT.host == "datapath"
    shared = SharedObject(datapath.OBJECT)
    assert set(shared.hooks["tcpconnect"]) == {"state", "free"}
    args = spec.args(eventRate=5)
    assert args.event_rate == 5
