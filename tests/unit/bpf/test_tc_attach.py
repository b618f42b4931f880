# SPDX-License-Identifier: Apache-2.0
"""The TC attach reconciler without a kernel, configured as the flow probe configures it, against
a fake of the ``bpf.tc`` calls: stale filters replaced, others' filters and qdiscs left alone,
and filters that cannot be taken off reported and kept."""

from __future__ import annotations

from typing import Any

import pytest

from otel_kubeskoop.bpf.tc_attach import Attacher, LeftAttached
from otel_kubeskoop.probe import ProbeContext
from otel_kubeskoop.probes import flow
from otel_kubeskoop.topology.netns import NetnsGone
from tests.unit.bpf.tcfakes import NET_DEV, FakeNs, FakeTC

A_NS, B_NS = 4026532281, 4026532282


@pytest.fixture
def fake_tc(monkeypatch: pytest.MonkeyPatch) -> FakeTC:
    return FakeTC(monkeypatch, flow.TC_HANDLE, flow.TC_PRIORITY)


def attacher(**args: Any) -> Attacher:
    probe = flow.FlowProbe(flow.FlowArgs(**args), ProbeContext(name="flow"))
    return Attacher("flow", flow.PROGRAMS, {"ingress": 21, "egress": 22}, {"ingress": 21, "egress": 22},
                    probe._wanted, handle=flow.TC_HANDLE, priority=flow.TC_PRIORITY)


def test_attach_to_every_pod_interface_but_lo_and_host_only_by_name(fake_tc: FakeTC) -> None:
    att = attacher(interfaceName="eth0")
    assert att.sync({A_NS: FakeNs(A_NS)}, now=0) == []
    assert fake_tc.ours(2) == {"ingress": 21, "egress": 22} == fake_tc.ours(3)
    assert fake_tc.ours(1) == {}
    assert att.interfaces(A_NS) == 2 and att.state[A_NS].ifaces["eth0"].created_qdisc
    host = attacher(interfaceName="eth0")
    fake_tc.table.clear()
    host.sync({B_NS: FakeNs(B_NS, is_host=True)}, now=0)
    assert set(host.state[B_NS].ifaces) == {"eth0"}


def test_stale_filters_are_replaced_and_others_never_touched(fake_tc: FakeTC) -> None:
    # eth0 has an earlier agent's filters (programs 11, 12) on a qdisc it made; net1 has someone
    # else's program at our (handle, priority).
    fake_tc.qdiscs |= {2, 3}
    fake_tc.table[(2, "ingress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 11
    fake_tc.table[(2, "egress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 12
    fake_tc.table[(3, "ingress", flow.TC_HANDLE, flow.TC_PRIORITY)] = 99
    att = attacher()
    errors = att.sync({A_NS: FakeNs(A_NS)}, now=0)
    assert att.stale_removed == 2 and fake_tc.ours(2) == {"ingress": 21, "egress": 22}
    assert [str(e) for e in errors] == [
        f"flow: interface net1: TC ingress filter {flow.TC_HANDLE:#x} prio {flow.TC_PRIORITY:#x} "
        "belongs to program 'cilium_from_co' (id 99); not replaced"]
    assert fake_tc.ours(3) == {"ingress": 99}
    assert set(att.state[A_NS].ifaces) == {"eth0"}
    assert att.state[A_NS].ifaces["eth0"].created_qdisc is False  # it was there


def test_detach_removes_only_the_qdiscs_it_made_and_left_empty(fake_tc: FakeTC) -> None:
    fake_tc.qdiscs.add(3)  # net1's qdisc predates us
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    fake_tc.table[(2, "ingress", 1, 1)] = 99  # someone adds a filter to the qdisc we made
    assert att.detach_all({A_NS: FakeNs(A_NS)}) == []
    assert fake_tc.ours(2) == fake_tc.ours(3) == {}
    assert fake_tc.qdiscs == {2, 3}  # eth0's has another filter now, net1's is not ours
    assert att.state == {}
    del fake_tc.table[(2, "ingress", 1, 1)]
    att.sync({A_NS: FakeNs(A_NS)}, now=1)
    fake_tc.qdiscs.discard(2)
    fake_tc.table = {k: v for k, v in fake_tc.table.items() if k[0] != 2}
    fake_tc.qdiscs.add(2)  # a qdisc another tool made meanwhile; ours went with the old one
    att.sync({A_NS: FakeNs(A_NS)}, now=100)  # the periodic check puts the filters back
    assert fake_tc.ours(2) == {"ingress": 21, "egress": 22}


def test_interfaces_and_namespaces_that_go_are_forgotten(fake_tc: FakeTC) -> None:
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)}, now=0)
    only_eth0 = NET_DEV.replace(b"net1:", b"#net1:").split(b"#")[0]
    del fake_tc.index["net1"]
    att.sync({A_NS: FakeNs(A_NS, names=only_eth0)}, now=1)
    assert set(att.state) == {A_NS} and set(att.state[A_NS].ifaces) == {"eth0"}
    assert att.detach_all({}) == [] and att.state == {}  # out of the scan: nothing to enter


def test_filters_that_cannot_be_taken_off_are_reported_and_kept(fake_tc: FakeTC) -> None:
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)}, now=0)
    fake_tc.refuse_detach.add(2)  # eth0's filters, in both namespaces (one fake table)
    errors = att.detach_all({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)})
    assert sorted((e.inode, e.names) for e in errors if isinstance(e, LeftAttached)) == [
        (A_NS, ("eth0",)), (B_NS, ("eth0",))]
    assert len(errors) == 2 and all(f"in network namespace {e.inode}: " in str(e)
                                    and "filter of interface 2" in str(e) for e in errors)
    assert {inode: set(st.ifaces) for inode, st in att.state.items()} == {
        A_NS: {"eth0"}, B_NS: {"eth0"}}  # net1's came off; eth0's are not forgotten
    assert fake_tc.ours(2) == {"ingress": 21, "egress": 22} and fake_tc.ours(3) == {}
    fake_tc.refuse_detach.clear()
    assert att.detach_all({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)}) == []
    assert att.state == {} and fake_tc.ours(2) == {}


def test_a_namespace_that_cannot_be_entered_is_reported_and_kept(fake_tc: FakeTC) -> None:
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    gone = NetnsGone(A_NS, "process 42 exited")
    (error,) = att.detach_all({A_NS: FakeNs(A_NS, gone=gone)})
    assert isinstance(error, LeftAttached) and error.__cause__ is gone
    assert (error.inode, error.names) == (A_NS, ("eth0", "net1"))
    assert str(error) == (f"flow: TC filters left on eth0, net1 in network namespace {A_NS}: "
                          f"network namespace {A_NS} is gone: process 42 exited")
    assert set(att.state[A_NS].ifaces) == {"eth0", "net1"}


def test_an_interface_no_longer_wanted_whose_filters_stay_is_reported_and_kept(fake_tc: FakeTC) -> None:
    att = attacher(interfaceName="eth0")
    att.sync({B_NS: FakeNs(B_NS)}, now=0)  # a pod namespace: eth0 and net1
    fake_tc.refuse_detach.add(3)
    host = FakeNs(B_NS, is_host=True)  # now wanted: eth0 only
    (error,) = att.sync({B_NS: host}, now=1)
    assert isinstance(error, LeftAttached) and error.names == ("net1",)
    assert set(att.state[B_NS].ifaces) == {"eth0", "net1"}
    fake_tc.refuse_detach.clear()
    assert att.sync({B_NS: host}, now=2) == []  # tried again: the set differs from the wanted one
    assert set(att.state[B_NS].ifaces) == {"eth0"} and fake_tc.ours(3) == {}
