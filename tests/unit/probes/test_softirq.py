# SPDX-License-Identifier: Apache-2.0
"""softirq without a kernel: recorded records decode; the softirq-types argument (upstream's)
becomes the kernel's bit mask or a config error; histograms and upstream's counters are node
scope, per type and CPU."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import plans
from otel_kubeskoop.bpf.generated import softirq as contract
from otel_kubeskoop.bpf.generated.softirq import SoftirqEvent, SoftirqKey
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.config import ConfigError, parse
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext, Scope
from otel_kubeskoop.probes import softirq
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.bpfdumps import as_json, dumps, read
from tests.unit.probes.latencyfakes import hist, latency_object, samples_by_key

PLANS = plans(contract.OBJECT)

CPU, TYPE, STAGE = "cpu.logical_number", "kubeskoop.softirq.type", "kubeskoop.latency.stage"


@pytest.mark.parametrize("path", dumps("softirq"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(SoftirqEvent)
    assert records.to_dict(records.decode(SoftirqEvent, dump.raw)) == dump.record
    event = softirq.decode_softirq(dump.raw, 0)
    assert as_json(event) == dump.event
    got = dict(event.attributes)
    assert event.netns is None and got[TYPE] == "net_rx"
    assert got[CPU] == dump.record["cpu"]  # upstream never filled the cpu


@pytest.mark.parametrize(
    ("event_type", "stage", "name", "upstream"),
    [(1, 1, "kubeskoop.softirq.sched_slow", "SOFTIRQ_SCHED_SLOW"),
     (2, 1, "kubeskoop.softirq.sched_100ms", "SOFTIRQ_SCHED_100MS"),
     (3, 2, "kubeskoop.softirq.execute_slow", "SOFTIRQ_EXCUTE_SLOW"),
     (4, 2, "kubeskoop.softirq.execute_100ms", "SOFTIRQ_EXCUTE_100MS")],
)
def test_event_types(event_type: int, stage: int, name: str, upstream: str) -> None:
    rec = SoftirqEvent.from_buffer_copy(read(dumps("softirq")[0]).raw)
    rec.hdr.type, rec.stage, rec.vec, rec.latency_ns = event_type, stage, 1, 150_000_000
    event = softirq.decode_softirq(bytes(rec))
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == (name, upstream)
    assert got[TYPE] == "timer" and got["kubeskoop.latency"] == pytest.approx(0.15)
    assert got[STAGE] == ("delay" if stage == 1 else "runtime")


def test_unknown_type_or_stage_is_a_decode_error() -> None:
    rec = SoftirqEvent.from_buffer_copy(read(dumps("softirq")[0]).raw)
    rec.hdr.type = 9
    with pytest.raises(DecodeError, match="unknown event type 9"):
        softirq.decode_softirq(bytes(rec))
    with pytest.raises(DecodeError, match="expected 56"):
        softirq.decode_softirq(bytes(rec)[:40])


def test_softirq_types_argument() -> None:
    assert softirq.SoftirqArgs().softirq_types == ("net_rx",)
    assert softirq.SoftirqArgs().vec_mask == 1 << 3
    args = softirq.SoftirqArgs.model_validate({"softirq-types": ["net_rx", "net_tx", "rcu", "net_rx"]})
    assert args.softirq_types == ("net_rx", "net_tx", "rcu")
    assert args.vec_mask == (1 << 3) | (1 << 2) | (1 << 9)
    assert softirq.SoftirqArgs.model_validate({"softirq-types": []}).softirq_types == ("net_rx",)
    assert softirq.SoftirqArgs.model_validate({"softirq-types": list(softirq.TYPES)}).vec_mask == 0x3FF
    with pytest.raises(ValidationError, match="unknown softirq type 'netrx' .known: hi, timer, net_tx"):
        softirq.SoftirqArgs.model_validate({"softirq-types": ["netrx"]})
    with pytest.raises(ValidationError, match="must be a list"):
        softirq.SoftirqArgs.model_validate({"softirq-types": 3})


@pytest.mark.parametrize(("types", "cpus", "slots"), [
    (["net_rx"], 2, 64),            # 4 keys: the floor
    (["net_rx"], 64, 256),          # 128 keys: at least twice as many slots
    (["net_rx", "net_tx"], 96, 1024),  # 384 keys
])
def test_the_table_is_a_power_of_two_at_least_twice_the_keys(monkeypatch, types, cpus, slots) -> None:
    monkeypatch.setattr(softirq.libbpf, "lib", lambda: type("Lib", (), {"libbpf_num_possible_cpus": lambda: cpus}))
    args = softirq.SoftirqArgs.model_validate({"softirq-types": types})
    assert softirq.hist_slots(args) == slots
    assert softirq.settings(args)["hists_mask"] == slots - 1
    assert softirq.TABLE.sizes(args) == {"hists": slots}


def test_an_unknown_type_in_the_config_names_the_key() -> None:
    config = parse({"metrics": {"probes": [{"name": "softirq", "args": {"softirq-types": ["net_rx", "net_tx"]}}]}})
    assert config.probes[0].args.vec_mask == 0b1100
    with pytest.raises(ConfigError) as info:
        parse({"metrics": {"probes": [{"name": "softirq", "args": {"softirq-types": ["nope"]}}]}},
              source="config.yaml")
    message = str(info.value)
    assert "config.yaml: metrics.probes[0].args.softirq-types" in message
    assert "unknown softirq type 'nope'" in message


def test_samples_are_node_scope_per_type_cpu_and_stage() -> None:
    probe = softirq.SoftirqProbe(None, ProbeContext(name="softirq", cycle=Cycle(namespaces={1: object()})))
    delay = hist({12: 4, 24: 1}, sum_ns=4 * 5000 + 20_000_000, slow=(1, 0))
    runtime = hist({14: 5}, sum_ns=5 * 20_000)
    probe.bpf.obj = latency_object([(SoftirqKey(3, 1, 1), delay), (SoftirqKey(3, 1, 2), runtime)])
    got = samples_by_key(probe.collect())
    base = ((CPU, 1), (TYPE, "net_rx"))
    h = got[("kubeskoop.softirq.duration", None, (*base, (STAGE, "delay")))]
    assert h.bounds == BOUNDS and h.counts == tuple(delay.slots)
    assert h.sum == pytest.approx(0.02002)
    assert sum(got[("kubeskoop.softirq.duration", None, (*base, (STAGE, "runtime")))].counts) == 5
    assert got[("kubeskoop.softirq.schedslow", None, base)] == 1
    assert got[("kubeskoop.softirq.schedslow100ms", None, base)] == 0
    assert got[("kubeskoop.softirq.excuteslow", None, base)] == 0
    assert got[("kubeskoop.softirq.excuteslow100ms", None, base)] == 0
    assert all(netns is None for _, netns, _ in got)
    assert not any(name == "kubeskoop.agent.bpf.inflight.evicted" for name, _, _ in got)


def test_plans_and_spec() -> None:
    assert [p.hook for p in PLANS] == ["raise", "entry", "exit"]
    for plan in PLANS:
        assert [c.point.kind.value for c in plan.candidates] == ["tp_btf", "tracepoint"]
    assert softirq.SPEC.scope is Scope.NODE
    assert softirq.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert {i.compat for i in softirq.SPEC.instruments} == {
        None, "kubeskoop_softirq_schedslow", "kubeskoop_softirq_schedslow100ms",
        "kubeskoop_softirq_excuteslow", "kubeskoop_softirq_excuteslow100ms"}
