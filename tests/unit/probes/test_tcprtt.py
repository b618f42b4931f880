# SPDX-License-Identifier: Apache-2.0
"""tcprtt without a kernel: the kernel's histograms per (namespace, quantity) become the three
OTel histograms in seconds; the sample interval is a setting; the probe joins the shared
object on its "deliver" hook."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf.generated import datapath
from otel_kubeskoop.bpf.generated import tcprtt as contract
from otel_kubeskoop.bpf.generated.tcprtt import TcprttKey, TcprttQuantity
from otel_kubeskoop.bpf.shared import SharedObject
from otel_kubeskoop.probe import Cycle, Histogram, Kind, ProbeContext
from otel_kubeskoop.probes import tcprtt
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.remotefakes import remote_maps
from tests.unit.probes.latencyfakes import hist, latency_object, samples_by_key

A_NS, B_NS, GONE_NS = 4026532281, 4026532282, 4026532999
SRTT, RTTVAR, RTO = (TcprttQuantity.TCPRTT_SRTT, TcprttQuantity.TCPRTT_RTTVAR,
                     TcprttQuantity.TCPRTT_RTO)
PROBE = ("kubeskoop.probe", "tcprtt")


def probe_with(entries, **kwargs) -> tcprtt.TcprttProbe:
    ctx = ProbeContext(name="tcprtt", cycle=Cycle(namespaces={A_NS: object(), B_NS: object()}))
    probe = tcprtt.TcprttProbe(None, ctx)
    probe.bpf.obj = latency_object(entries, **kwargs)
    probe.bpf.obj.maps.update(remote_maps()[1])
    return probe


def test_three_histograms_per_namespace_in_seconds() -> None:
    # A: 5 samples of srtt in [16.8 ms, 33.6 ms) (slot 24), rttvar ~ 4 ms, rto 220 ms (slot 27).
    srtt = hist({24: 5}, sum_ns=5 * 21_000_000)
    rttvar = hist({21: 5}, sum_ns=5 * 4_000_000)
    rto = hist({27: 5}, sum_ns=5 * 220_000_000)
    probe = probe_with([(TcprttKey(A_NS, 7, SRTT), srtt), (TcprttKey(A_NS, 7, RTTVAR), rttvar),
                        (TcprttKey(A_NS, 7, RTO), rto), (TcprttKey(B_NS, 8, SRTT), hist({10: 1})),
                        (TcprttKey(GONE_NS, 9, SRTT), hist({10: 3})),
                        (TcprttKey(A_NS, 7, 99), hist({10: 1}))], full=2)
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.tcprtt.srtt", A_NS, ())] == Histogram(BOUNDS, tuple(srtt.slots),
                                                                pytest.approx(0.105))
    assert BOUNDS[23] < 0.021 <= BOUNDS[24]  # slot 24 is the bucket whose bound follows 16.8 ms
    assert got[("kubeskoop.tcprtt.rttvar", A_NS, ())].sum == pytest.approx(0.02)
    assert got[("kubeskoop.tcprtt.rto", A_NS, ())].sum == pytest.approx(1.1)
    assert sum(got[("kubeskoop.tcprtt.srtt", B_NS, ())].counts) == 1
    # A namespace that is gone and a quantity this version does not know: no series.
    assert {ns for (_, ns, _) in got} == {A_NS, B_NS, None}
    assert len([k for k in got if k[1] == A_NS]) == 3
    assert got[("kubeskoop.agent.bpf.map.full", None, (PROBE, ("kubeskoop.bpf.map", "hists")))] == 2


def test_sample_interval_is_the_setting() -> None:
    assert tcprtt.TcprttArgs().settings == {"targ_interval_ns": 1_000_000_000, "targ_remotes": True}
    assert tcprtt.SPEC.args(sampleIntervalMs=10, maxRemotes=0).settings == {
        "targ_interval_ns": 10_000_000, "targ_remotes": False}
    for wrong in ({"sampleIntervalMs": 0}, {"interval": 5}, {"maxRemotes": -1}):
        with pytest.raises(ValidationError):
            tcprtt.SPEC.args(**wrong)
    assert set(contract.OBJECT.globals) == {"targ_interval_ns", "targ_remotes"}


def test_spec_joins_the_shared_object_on_deliver() -> None:
    spec = tcprtt.SPEC
    assert spec.kinds == {Kind.METRICS} and not spec.events
    assert {i.name for i in spec.instruments} == {
        "kubeskoop.tcprtt.srtt", "kubeskoop.tcprtt.rttvar", "kubeskoop.tcprtt.rto",
        "kubeskoop.tcprtt.remote.srtt"}
    assert all(i.unit == "s" and i.compat is None for i in spec.instruments)
    assert contract.OBJECT.host == "datapath"
    shared = SharedObject(datapath.OBJECT)
    assert shared.hooks["tcprtt"] == {"deliver": datapath.DatapathSlot.DATAPATH_TCPRTT_DELIVER}
    # Its bit is its own: it starts and stops without the others.
    assert len(set(shared.bits.values())) == len(shared.bits)
