# SPDX-License-Identifier: Apache-2.0
"""softirq on the real kernel: veth traffic between two test namespaces raises NET_RX (the
receiving end's backlog) on the sending CPU; its delay and run-time histograms must grow, agree
with each other, and stay on the node (no namespace); the types filter and events must hold."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from otel_kubeskoop.bpf import btf, libbpf
from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import softirq
from tests.privileged.netnsutil import netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, no_ipv6
from tests.privileged.probes.latencyutil import KINDS, count, with_kind

require_root()

pytestmark = pytest.mark.privileged

DURATION = "kubeskoop.softirq.duration"
TYPE = "kubeskoop.softirq.type"
STAGE = "kubeskoop.latency.stage"
CPU = "cpu.logical_number"

UDP_FLOOD = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"x" * 100, ("10.231.0.2", 9999))
"""


def node_series(h: Harness) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    """Every softirq series: {(instrument, attributes): value}; all of them node scope."""
    series = h.collect("softirq")
    assert all(netns is None for _, netns, _ in series), "softirqs belong to no namespace"
    return {(inst, a): v for (inst, _, a), v in series.items()}


def totals(h: Harness, kind: str = "net_rx") -> dict[str, tuple[int, float]]:
    """{stage: (intervals, seconds)} of one softirq type, summed over CPUs."""
    out: dict[str, tuple[int, float]] = {}
    for (inst, a), v in node_series(h).items():
        d = dict(a)
        if inst == DURATION and d[TYPE] == kind:
            n, s = out.get(d[STAGE], (0, 0.0))
            out[d[STAGE]] = (n + count(v), s + v.sum)
    return out


def traffic(packets: int = 2000) -> None:
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            a.python(UDP_FLOOD.format(count=packets))


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(softirq.SPEC)
    assert probe.bpf.chosen == {hook: AttachPoint("tp_btf", f"softirq_{hook}")
                            for hook in ("raise", "entry", "exit")}


def test_softirq_type_names_are_the_kernels() -> None:
    members = btf.vmlinux_btf().enum_members_containing("NET_RX_SOFTIRQ")
    kernel = [name.removesuffix("_SOFTIRQ").lower() for name, _ in members if name != "NR_SOFTIRQS"]
    assert tuple(kernel) == softirq.TYPES


@pytest.mark.parametrize("kind", KINDS)
def test_veth_traffic_shows_in_net_rx_delay_and_runtime(harness: Harness, kind: str) -> None:
    probe = harness.start(softirq.SPEC, factory=with_kind(softirq.SoftirqProbe, kind))
    assert {p.kind for p in probe.bpf.chosen.values()} == {kind}
    before = totals(harness)
    t0 = time.monotonic()
    traffic()
    elapsed = time.monotonic() - t0
    after = totals(harness)
    delay = after["delay"][0] - before.get("delay", (0, 0.0))[0]
    runtime = after["runtime"][0] - before.get("runtime", (0, 0.0))[0]
    runtime_s = after["runtime"][1] - before.get("runtime", (0, 0.0))[1]
    # Each veth packet is received through NET_RX; batches are many packets per run, but a
    # run is made at least every few packets.
    assert runtime >= 20
    # One delay per run (its raise) and one run time per run: the same count, give or take the
    # runs in flight at either collection and runs raised before the probe attached.
    assert abs(runtime - delay) <= max(5, runtime // 20)
    # Runs cannot add up to more CPU time than the CPUs had.
    assert 0 < runtime_s <= elapsed * (os.cpu_count() or 1)
    # Only the default type, NET_RX, is measured.
    assert {dict(a)[TYPE] for (inst, a) in node_series(harness) if inst == DURATION} == {"net_rx"}


def test_softirq_types_choose_what_is_measured(harness: Harness) -> None:
    args = softirq.SoftirqArgs.model_validate({"softirq-types": ["net_tx", "timer"]})
    harness.start(softirq.SPEC, args)
    traffic(200)
    time.sleep(0.05)  # timer softirqs run every tick
    types = {dict(a)[TYPE] for (inst, a) in node_series(harness) if inst == DURATION}
    assert "timer" in types
    assert types <= {"net_tx", "timer"}


def test_upstream_counters_are_reported_per_type_and_cpu(harness: Harness) -> None:
    harness.start(softirq.SPEC)
    traffic(200)
    series = node_series(harness)
    cpus = {dict(a)[CPU] for (inst, a) in series if inst == DURATION}
    measured = {(dict(a)[CPU], dict(a)[STAGE]): count(v) for (inst, a), v in series.items()
                if inst == DURATION and dict(a)[TYPE] == "net_rx"}
    found = {}
    for name in ("schedslow", "schedslow100ms", "excuteslow", "excuteslow100ms"):
        found[name] = {dict(a)[CPU]: v for (inst, a), v in series.items()
                       if inst == f"kubeskoop.softirq.{name}" and dict(a)[TYPE] == "net_rx"}
        assert set(found[name]) == cpus
    # Each counts the intervals of its stage above its threshold: some of the histogram's, and
    # the 100 ms ones some of the threshold's.
    for cpu in cpus:
        for slow, stage in (("schedslow", "delay"), ("excuteslow", "runtime")):
            assert found[slow + "100ms"][cpu] <= found[slow][cpu] <= measured[(cpu, stage)]


def test_runs_over_a_low_threshold_are_events(harness: Harness) -> None:
    args = softirq.SoftirqArgs(thresholdMs=0.002)  # 2 us: most NET_RX runs of a veth flood
    harness.start(softirq.SPEC, args)
    traffic()
    harness.drain()
    events = [e for e in harness.events if e.name == "kubeskoop.softirq.execute_slow"]
    assert events
    for event in events:
        e = attrs(event)
        assert event.netns is None
        assert event.upstream_type == "SOFTIRQ_EXCUTE_SLOW"
        assert e[TYPE] == "net_rx"
        assert e[STAGE] == "runtime"
        assert 0.000002 < e["kubeskoop.latency"] <= 0.1
        assert isinstance(e[CPU], int) and e[CPU] < libbpf.lib().libbpf_num_possible_cpus()
