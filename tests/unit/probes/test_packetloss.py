# SPDX-License-Identifier: Apache-2.0
"""packetloss without a kernel: the decoder against records recorded on Linux 6.18, the metric
samples from counter maps, the namespace pruning, and the settings it loads with."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.generated import packetloss as contract
from otel_kubeskoop.bpf.generated.packetloss import PacketlossEvent, PacketlossKey
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import member_plans
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import packetloss
from otel_kubeskoop.probes._decode import KernelNames
from tests.unit.probes.bpfdumps import FakeMap, FakeObject, as_json, dumps, flow_tuple, read

NAMES = KernelNames(
    drop_reasons={0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "SKB_DROP_REASON_NOT_SPECIFIED",
                  3: "SKB_DROP_REASON_NO_SOCKET", 12: "SKB_DROP_REASON_NETFILTER_DROP"},
    drop_subsystems={0: "SKB_DROP_REASON_SUBSYS_CORE", 2: "SKB_DROP_REASON_SUBSYS_OPENVSWITCH"},
)

PLANS = member_plans(contract.OBJECT)
A_NS, B_NS = 4026532281, 4026532282


@pytest.mark.parametrize("path", dumps("packetloss"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(PacketlossEvent)
    assert records.to_dict(records.decode(PacketlossEvent, dump.raw)) == dump.record
    event = packetloss.decode_packetloss(dump.raw, dump.names, 0, dump.kallsyms)
    assert as_json(event) == dump.event


def test_no_socket_drop_attributes() -> None:
    dump = read(Path(dumps("packetloss")[0]).with_name("packetloss_no_socket_ipv4.dump"))
    event = packetloss.decode_packetloss(dump.raw, dump.names, 1_000, dump.kallsyms)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.packetloss.drop", "PacketLoss")
    assert event.netns == dump.record["hdr"]["netns"]
    assert event.timestamp_ns == dump.record["hdr"]["ts_ns"] + 1_000
    assert got["kubeskoop.drop.reason"] == "NO_SOCKET"
    assert got["kubeskoop.drop.location"].startswith("tcp_v4_rcv+0x")
    assert (got["network.type"], got["network.transport"], got["destination.port"]) == ("ipv4", "tcp", 9)
    assert got["network.interface.name"] == "lo"


def test_stack_starts_where_the_kernel_freed_the_packet() -> None:
    dump = read(dumps("packetloss")[0].with_name("packetloss_stack_ipv4.dump"))
    assert dump.record["stack_depth"] > 2
    stack = dict(packetloss.decode_packetloss(dump.raw, dump.names, 0, dump.kallsyms).attributes)["kubeskoop.stack"]
    assert stack[:2] == ("sk_skb_reason_drop+0x90", "tcp_v4_rcv+0x91")
    # Without kallsyms (hidden addresses) every frame is kept, as hex.
    raw_stack = dict(packetloss.decode_packetloss(dump.raw, dump.names, 0, None).attributes)["kubeskoop.stack"]
    assert len(raw_stack) == dump.record["stack_depth"] and raw_stack[0].startswith("0xffff")


def test_ipv6_and_netfilter_records() -> None:
    v6 = read(dumps("packetloss")[0].with_name("packetloss_no_socket_ipv6.dump"))
    got = dict(packetloss.decode_packetloss(v6.raw, v6.names, 0, v6.kallsyms).attributes)
    assert (got["network.type"], got["source.address"], got["destination.address"]) == ("ipv6", "::1", "::1")
    nf = read(dumps("packetloss")[0].with_name("packetloss_netfilter_udp.dump"))
    got = dict(packetloss.decode_packetloss(nf.raw, nf.names, 0, nf.kallsyms).attributes)
    assert (got["kubeskoop.drop.reason"], got["network.transport"], got["destination.port"]) == (
        "NETFILTER_DROP", "udp", 5000)


def test_wrong_size_and_unknown_type_are_decode_errors() -> None:
    dump = read(dumps("packetloss")[0])
    with pytest.raises(DecodeError, match="record of 343 bytes, expected 344"):
        packetloss.decode_packetloss(dump.raw[:-1], NAMES)
    with pytest.raises(DecodeError, match="expected 344"):
        packetloss.decode_packetloss(dump.raw + bytes(8), NAMES)
    rec = PacketlossEvent.from_buffer_copy(dump.raw)
    rec.hdr.type = 9
    with pytest.raises(DecodeError, match="unknown event type 9"):
        packetloss.decode_packetloss(bytes(rec), NAMES)


def test_undecodable_records_are_counted_never_raised() -> None:
    emitted = []
    ctx = ProbeContext(name="packetloss", emit=emitted.append)
    probe = packetloss.PacketlossProbe(packetloss.PacketlossArgs(), ctx)
    probe.names = NAMES
    good = read(dumps("packetloss")[0]).raw
    probe.bpf._on_record(b"\x00" * 10)
    probe.bpf._on_record(good[:-8])
    probe.bpf._on_record(good)
    assert ctx.decode_errors == 2
    assert [e.name for e in emitted] == ["kubeskoop.packetloss.drop"]


def test_drop_reason_names() -> None:
    assert NAMES.drop_reason(3) == "NO_SOCKET"
    assert NAMES.drop_reason(12) == "NETFILTER_DROP"
    assert NAMES.drop_reason(2) == "NOT_SPECIFIED"
    assert NAMES.drop_reason((2 << 16) | 3) == "OPENVSWITCH:3"
    assert NAMES.drop_reason(999) == "UNKNOWN:999"
    assert NAMES.reason_value("SKB_CONSUMED") == 1
    assert NAMES.reason_value("NOPE") is None


def probe_with(counters: list[tuple[PacketlossKey, int]], namespaces: dict[int, object] | None = None,
               events: bool = False, losses: dict[int, int] | None = None):
    ctx = ProbeContext(name="packetloss", cycle=Cycle(namespaces=namespaces or {}), events_enabled=events)
    probe = packetloss.PacketlossProbe(packetloss.PacketlossArgs(), ctx)
    probe.names = NAMES
    probe.bpf.obj = FakeObject({
        "counters": FakeMap(counters),
        "counters_full": FakeMap({0: 7}),
        "losses": FakeMap(losses or {0: 0, 1: 0}),
        "tuples": FakeMap([(flow_tuple("10.0.0.9", "10.0.0.1", 17), 9)]),
        "tuples_inserted": FakeMap({0: 12}),
        "tuples_netfilter": FakeMap([(flow_tuple("10.0.0.9", "10.0.0.1", 17), 4)]),
        "tuples_netfilter_inserted": FakeMap({0: 1}),
    })
    return probe


def series(samples) -> dict:
    out = {}
    for s in samples:
        key = (s.instrument.name, s.netns, s.attributes)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    return out


def test_samples_by_reason_family_protocol_and_the_netfilter_subset() -> None:
    probe = probe_with([
        (PacketlossKey(A_NS, 1, 3, 2, 6), 5),     # NO_SOCKET ipv4 tcp
        (PacketlossKey(A_NS, 1, 12, 2, 17), 4),   # NETFILTER_DROP ipv4 udp
        (PacketlossKey(A_NS, 1, 12, 10, 17), 1),  # NETFILTER_DROP ipv6 udp
        (PacketlossKey(B_NS, 1, 2, 0, 0), 2),     # NOT_SPECIFIED, not IP
        (PacketlossKey(0, 1, 3, 2, 6), 1),        # namespace unknown: node scope
    ], namespaces={A_NS: object(), B_NS: object()})
    got = {k: v for k, v in series(probe.collect()).items() if ".tuples" not in k[0] and "evicted" not in k[0]}
    R, T, P = "kubeskoop.drop.reason", "network.type", "network.transport"
    assert got == {
        ("kubeskoop.packetloss.total", A_NS, ((R, "NO_SOCKET"), (T, "ipv4"), (P, "tcp"))): 5,
        ("kubeskoop.packetloss.total", A_NS, ((R, "NETFILTER_DROP"), (T, "ipv4"), (P, "udp"))): 4,
        ("kubeskoop.packetloss.total", A_NS, ((R, "NETFILTER_DROP"), (T, "ipv6"), (P, "udp"))): 1,
        ("kubeskoop.packetloss.netfilter", A_NS, ((T, "ipv4"), (P, "udp"))): 4,
        ("kubeskoop.packetloss.netfilter", A_NS, ((T, "ipv6"), (P, "udp"))): 1,
        ("kubeskoop.packetloss.total", B_NS, ((R, "NOT_SPECIFIED"),)): 2,
        ("kubeskoop.packetloss.total", None, ((R, "NO_SOCKET"), (T, "ipv4"), (P, "tcp"))): 1,
        ("kubeskoop.agent.bpf.map.full", None, (("kubeskoop.probe", "packetloss"), ("kubeskoop.bpf.map", "counters"))): 7,
    }


def test_kernel_losses_are_reported_when_events_are_on() -> None:
    probe = probe_with([], events=True, losses={0: 3, 1: 40})
    got = series(probe.collect())
    lost = {dict(k[2])["kubeskoop.loss.reason"]: v for k, v in got.items() if k[0] == "kubeskoop.agent.events.lost"}
    assert lost == {"ring_buffer_full": 3, "rate_limited": 40}
    assert probe.bpf.losses() == {"ring_buffer_full": 3, "rate_limited": 40}


def test_counters_of_a_vanished_namespace_are_deleted_after_two_collections() -> None:
    probe = probe_with([(PacketlossKey(A_NS, 1, 3, 2, 6), 5), (PacketlossKey(B_NS, 1, 3, 2, 6), 1)],
                       namespaces={A_NS: object(), B_NS: object()})
    counters = probe.bpf.obj.maps["counters"]
    assert {s.netns for s in probe.collect() if s.instrument is packetloss.PACKETLOSS_TOTAL} == {A_NS, B_NS}
    probe.bpf.ctx.cycle.namespaces = {A_NS: object()}  # B went away
    assert {s.netns for s in probe.collect() if s.instrument is packetloss.PACKETLOSS_TOTAL} == {A_NS}
    assert len(counters.entries) == 2  # one collection of grace
    probe.collect()
    assert [(k.netns, k.reason) for k, _ in counters.entries] == [(A_NS, 3)]
    assert [k.netns for k in counters.deleted] == [B_NS]


def test_a_reused_inode_reports_the_new_namespace_and_deletes_the_old_ones_counters() -> None:
    # The kernel gave the inode of a deleted namespace (id 5) to a new one (id 9).
    probe = probe_with([(PacketlossKey(A_NS, 5, 3, 2, 6), 40), (PacketlossKey(A_NS, 9, 3, 2, 6), 2),
                        (PacketlossKey(A_NS, 5, 12, 2, 17), 7)], namespaces={A_NS: object()})
    got = {s.attributes: s.value for s in probe.collect() if s.instrument is packetloss.PACKETLOSS_TOTAL}
    assert got == {(("kubeskoop.drop.reason", "NO_SOCKET"), ("network.type", "ipv4"), ("network.transport", "tcp")): 2}
    assert [(k.netns_cookie, k.reason) for k, _ in probe.bpf.obj.maps["counters"].entries] == [(9, 3)]


def test_a_namespace_back_within_the_grace_keeps_its_counters() -> None:
    probe = probe_with([(PacketlossKey(B_NS, 1, 3, 2, 6), 1)], namespaces={A_NS: object()})
    probe.collect()  # B not yet in the scan
    probe.bpf.ctx.cycle.namespaces = {A_NS: object(), B_NS: object()}
    assert {s.netns for s in probe.collect() if s.instrument is packetloss.PACKETLOSS_TOTAL} == {B_NS}
    probe.bpf.ctx.cycle.namespaces = {A_NS: object()}
    probe.collect()
    assert len(probe.bpf.obj.maps["counters"].entries) == 1  # the count of misses started again


def test_before_any_scan_everything_is_reported_and_nothing_deleted() -> None:
    probe = probe_with([(PacketlossKey(A_NS, 1, 3, 2, 6), 5)])
    for _ in range(3):
        assert {s.netns for s in probe.collect()} == {A_NS, None}
    assert probe.bpf.obj.maps["counters"].deleted == []


def test_rodata_filters_consumed_and_not_dropped_by_this_kernels_values() -> None:
    probe = packetloss.PacketlossProbe(packetloss.PacketlossArgs(enableStack=True), ProbeContext(name="packetloss"))
    probe.names = NAMES
    assert probe.settings() == {"targ_reason_consumed": 1, "targ_reason_not_dropped": 0,
                                "targ_reason_netfilter": 12, "targ_stack": True}
    probe.names = KernelNames(drop_reasons={2: "SKB_DROP_REASON_NOT_SPECIFIED"})  # Linux 5.17-6.1
    assert probe.settings()["targ_reason_consumed"] == 0xFFFFFFFF


def test_drops_per_tuple_for_the_compat_endpoint_and_the_evicted_tuples() -> None:
    got = series(probe_with([]).collect())
    tuple_attrs = (("network.type", "ipv4"), ("network.transport", "udp"), ("source.address", "10.0.0.9"),
                   ("source.port", 0), ("destination.address", "10.0.0.1"), ("destination.port", 0))
    assert got[("kubeskoop.packetloss.tuples", None, tuple_attrs)] == 9
    assert got[("kubeskoop.packetloss.netfilter.tuples", None, tuple_attrs)] == 4
    # 12 tuples inserted, 1 still there: 11 evicted.
    assert got[("kubeskoop.agent.bpf.map.evicted", None, (("kubeskoop.probe", "packetloss"),
                                                          ("kubeskoop.bpf.map", "tuples")))] == 11
    assert not packetloss.PACKETLOSS_TUPLES.otlp and packetloss.PACKETLOSS_TOTAL.compat is None


def test_upstream_config_args_load() -> None:
    cfg = parse({"metrics": {"probes": [{"name": "packetloss"}]},
                 "event": {"probes": [{"name": "packetloss", "args": {"EnableStack": True, "eventRate": 10}}]}},
                "<test>")
    (ev,) = [p for p in cfg.probes if p.kind is Kind.EVENTS]
    assert ev.args.enable_stack is True and ev.args.event_rate == 10 and ev.args.event_burst == 200
    (met,) = [p for p in cfg.probes if p.kind is Kind.METRICS]
    assert met.args == packetloss.PacketlossArgs()


def test_spec() -> None:
    spec = packetloss.SPEC
    assert spec.kinds == {Kind.METRICS, Kind.EVENTS}
    assert [c.point.kind.value for c in PLANS[0].candidates] == [
        "tp_btf", "tracepoint", "fentry", "fentry", "kprobe", "kprobe"]
    assert contract.OBJECT.maps["counters"].key is PacketlossKey and not spec.default_enabled
