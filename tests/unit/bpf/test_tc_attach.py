# SPDX-License-Identifier: Apache-2.0
"""The TC attach reconciler without a kernel, configured as the flow probe configures it, against
a fake of the ``bpf.tc`` calls and a fake ``/proc``: each run at its own handle, other runs'
filters left while a process holds their programs and reaped once none does, qdiscs removed only
when otel-kubeskoop's marker is on them and nothing else, and filters that cannot be taken off
reported and kept."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from otel_kubeskoop.bpf import tc_owner
from otel_kubeskoop.bpf.tc_attach import Attacher, LeftAttached
from otel_kubeskoop.cleanup import cleanup
from otel_kubeskoop.probe import ProbeContext
from otel_kubeskoop.probes import flow
from otel_kubeskoop.procfs.pid_fdinfo import HeldPrograms
from otel_kubeskoop.topology.netns import NetnsGone
from tests.unit.bpf.tcfakes import NET_DEV, FakeNs, FakeTC, fake_proc

A_NS, B_NS = 4026532281, 4026532282
ETH0, NET1 = 2, 3
THIS, OTHER, EARLIER = 21, 31, 11  # ingress program ids (the handles) of three runs
BOTH = {"ingress": 21, "egress": 22}


@pytest.fixture
def fake_tc(monkeypatch: pytest.MonkeyPatch) -> FakeTC:
    return FakeTC(monkeypatch, flow.TC_PRIORITY)


def attacher(proc_root: str = "/nonexistent", ingress: int = THIS, **args: Any) -> Attacher:
    probe = flow.FlowProbe(flow.FlowArgs(**args), ProbeContext(name="flow"))
    ids = {"ingress": ingress, "egress": ingress + 1}
    return Attacher("flow", flow.PROGRAMS, ids, ids, probe._wanted, handle=ingress,
                    priority=flow.TC_PRIORITY, proc_root=proc_root)


def test_attach_to_every_pod_interface_but_lo_and_host_only_by_name(fake_tc: FakeTC) -> None:
    att = attacher(interfaceName="eth0")
    assert att.sync({A_NS: FakeNs(A_NS)}, now=0) == []
    assert fake_tc.of(ETH0, THIS) == BOTH == fake_tc.of(NET1, THIS)
    assert fake_tc.of(1, THIS) == {}
    assert att.interfaces(A_NS) == 2 and fake_tc.marked(ETH0) and fake_tc.marked(NET1)
    host = attacher(interfaceName="eth0")
    fake_tc.table.clear()
    host.sync({B_NS: FakeNs(B_NS, is_host=True)}, now=0)
    assert set(host.state[B_NS].ifaces) == {"eth0"}


def test_two_live_runs_keep_their_own_filters_and_the_last_one_out_removes_the_qdisc(
        fake_tc: FakeTC, tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {100: [EARLIER, EARLIER + 1], 200: [THIS, THIS + 1]})
    old, new = attacher(proc, EARLIER), attacher(proc, THIS)
    assert old.sync({A_NS: FakeNs(A_NS)}, now=0) == []  # the old agent made the qdiscs
    assert new.sync({A_NS: FakeNs(A_NS)}, now=0) == []
    assert fake_tc.of(ETH0, EARLIER) == {"ingress": 11, "egress": 12} and fake_tc.of(ETH0, THIS) == BOTH
    assert new.reaped == 0
    assert old.detach_all({A_NS: FakeNs(A_NS)}) == []  # the old one stops first
    assert fake_tc.of(ETH0, EARLIER) == {} and fake_tc.of(ETH0, THIS) == BOTH
    assert fake_tc.qdiscs == {ETH0, NET1} and fake_tc.marked(ETH0)
    assert new.sync({A_NS: FakeNs(A_NS)}, now=100) == [] and fake_tc.of(ETH0, THIS) == BOTH
    assert new.detach_all({A_NS: FakeNs(A_NS)}) == []
    assert fake_tc.qdiscs == set() and fake_tc.table == {}  # the new one removes what the old made


@pytest.mark.parametrize("held, kthreadd, reaped", [
    ({}, True, 4),  # nobody holds the earlier run's programs: reaped on eth0 and on net1
    ({100: [EARLIER, EARLIER + 1]}, True, 0),  # its process is alive
    ({100: [EARLIER]}, True, 2),  # only the ingress program is still held: egress ones go
    ({}, False, 0),  # a /proc without the node's processes: cannot tell, nothing reaped
], ids=["dead", "alive", "half", "no-host-pids"])
def test_filters_of_other_runs_are_reaped_only_when_no_process_holds_them(
        fake_tc: FakeTC, tmp_path: Path, held: dict[int, list[int]], kthreadd: bool,
        reaped: int, caplog: pytest.LogCaptureFixture) -> None:
    for ifindex in (ETH0, NET1):
        fake_tc.put(ifindex, "ingress", EARLIER, EARLIER)
        fake_tc.put(ifindex, "egress", EARLIER, EARLIER + 1)
    att = attacher(fake_proc(tmp_path, held, kthreadd=kthreadd), interfaceName="eth0")
    with caplog.at_level(logging.WARNING):
        assert att.sync({A_NS: FakeNs(A_NS, is_host=True)}, now=0) == []
        att.sync({A_NS: FakeNs(A_NS, is_host=True)}, now=100)
    assert att.reaped == reaped
    assert fake_tc.of(ETH0, THIS) == BOTH  # ours attached whatever the others are
    left = 4 - reaped
    assert len(fake_tc.of(ETH0, EARLIER)) + len(fake_tc.of(NET1, EARLIER)) == left
    told = [r.message for r in caplog.records if "left in place" in r.message]
    assert told == ([] if kthreadd else
                    [f"flow: 4 TC filters of other agents left in place, live or not: "
                     f"{tmp_path} does not show the node's processes (no hostPID)"])


def test_a_marked_qdisc_a_dead_run_left_on_an_unwanted_interface_goes(fake_tc: FakeTC,
                                                                       tmp_path: Path) -> None:
    dead = attacher(fake_proc(tmp_path / "then", {}), EARLIER)
    dead.sync({A_NS: FakeNs(A_NS)}, now=0)
    fake_tc.qdiscs.add(99)  # and an interface with a qdisc of another tool's, not ours
    # A new agent that wants only the host's eth0: net1's filters are reaped, its qdisc removed.
    att = attacher(fake_proc(tmp_path / "now", {}), interfaceName="eth0")
    assert att.sync({A_NS: FakeNs(A_NS, is_host=True)}, now=0) == []
    assert att.reaped == 4 and fake_tc.qdiscs == {ETH0, 99}
    assert fake_tc.of(ETH0, THIS) == BOTH and fake_tc.marked(ETH0)


def test_a_qdisc_without_the_marker_is_never_removed(fake_tc: FakeTC) -> None:
    fake_tc.qdiscs.add(NET1)  # net1's qdisc predates us
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    assert not fake_tc.marked(NET1) and fake_tc.marked(ETH0)
    fake_tc.put(ETH0, "ingress", 1, 99, priority=1)  # someone adds a filter to the qdisc we made
    assert att.detach_all({A_NS: FakeNs(A_NS)}) == []
    assert fake_tc.of(ETH0, THIS) == fake_tc.of(NET1, THIS) == {}
    assert fake_tc.qdiscs == {ETH0, NET1}  # eth0's has another filter now, net1's is not ours
    assert att.state == {}


def test_another_program_at_our_pair_is_never_replaced(fake_tc: FakeTC) -> None:
    fake_tc.put(NET1, "ingress", THIS, 99)
    att = attacher()
    errors = att.sync({A_NS: FakeNs(A_NS)}, now=0)
    assert [str(e) for e in errors] == [
        f"flow: interface net1: TC ingress filter {THIS:#x} prio {flow.TC_PRIORITY:#x} "
        "belongs to program 'cilium_from_co' (id 99); not replaced"]
    assert fake_tc.of(NET1, THIS) == {"ingress": 99} and set(att.state[A_NS].ifaces) == {"eth0"}


def test_filters_taken_off_by_someone_else_are_put_back_at_the_next_check(fake_tc: FakeTC) -> None:
    att = attacher()
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    fake_tc.destroy_clsact(ETH0)  # a tool removed the qdisc and our filters with it
    att.sync({A_NS: FakeNs(A_NS)}, now=1)  # not yet re-checked
    assert fake_tc.of(ETH0, THIS) == {}
    att.sync({A_NS: FakeNs(A_NS)}, now=100)
    assert fake_tc.of(ETH0, THIS) == BOTH and fake_tc.marked(ETH0)


@pytest.mark.parametrize("prestop, removed, left", [(False, 2, 8), (True, 6, 4)])
def test_cleanup_removes_what_no_live_process_outside_its_cgroup_holds(
        fake_tc: FakeTC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prestop: bool,
        removed: int, left: int) -> None:
    proc = fake_proc(tmp_path, {100: [THIS, THIS + 1], 200: [OTHER, OTHER + 1]})
    att, other = attacher(proc, THIS), attacher(proc, OTHER)
    att.sync({A_NS: FakeNs(A_NS)}, now=0)
    other.sync({A_NS: FakeNs(A_NS)}, now=0)
    for ifindex in (ETH0, NET1):  # and a dead run's filter
        fake_tc.put(ifindex, "egress", EARLIER, EARLIER + 1)

    class Discovery:
        def __init__(self, **_kw: Any) -> None: ...
        def __enter__(self) -> Discovery: return self
        def __exit__(self, *exc: object) -> None: ...
        def scan(self) -> dict[int, FakeNs]: return {A_NS: FakeNs(A_NS)}

    monkeypatch.setattr("otel_kubeskoop.cleanup.NetnsDiscovery", Discovery)
    # In pid 100's container (fake_proc gives it cgroup /pod100), as a preStop hook would run.
    done = cleanup(proc, ignore_cgroup=b"0::/pod100\n" if prestop else None)
    # The dead run's filters go; this container's agent's too before it stops (prestop).
    assert (done.namespaces, done.filters_removed, done.filters_left) == (1, removed, left)
    assert done.qdiscs_removed == 0 and done.incomplete == ""
    assert fake_tc.of(ETH0, OTHER) == {"ingress": 31, "egress": 32}  # another container's agent
    assert bool(fake_tc.of(ETH0, THIS)) is not prestop
    assert fake_tc.of(ETH0, EARLIER) == {} and done.errors == []


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
    fake_tc.refuse_detach.add(ETH0)  # eth0's filters, in both namespaces (one fake table)
    errors = att.detach_all({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)})
    assert sorted((e.inode, e.names) for e in errors if isinstance(e, LeftAttached)) == [
        (A_NS, ("eth0",)), (B_NS, ("eth0",))]
    assert len(errors) == 2 and all(f"in network namespace {e.inode}: " in str(e)
                                    and "filter of interface 2" in str(e) for e in errors)
    assert {inode: set(st.ifaces) for inode, st in att.state.items()} == {
        A_NS: {"eth0"}, B_NS: {"eth0"}}  # net1's came off; eth0's are not forgotten
    assert fake_tc.of(ETH0, THIS) == BOTH and fake_tc.of(NET1, THIS) == {}
    fake_tc.refuse_detach.clear()
    assert att.detach_all({A_NS: FakeNs(A_NS), B_NS: FakeNs(B_NS)}) == []
    assert att.state == {} and fake_tc.of(ETH0, THIS) == {}


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
    fake_tc.refuse_detach.add(NET1)
    host = FakeNs(B_NS, is_host=True)  # now wanted: eth0 only
    (error,) = att.sync({B_NS: host}, now=1)
    assert isinstance(error, LeftAttached) and error.names == ("net1",)
    assert set(att.state[B_NS].ifaces) == {"eth0", "net1"}
    fake_tc.refuse_detach.clear()
    assert att.sync({B_NS: host}, now=2) == []  # tried again: the set differs from the wanted one
    assert set(att.state[B_NS].ifaces) == {"eth0"} and fake_tc.of(NET1, THIS) == {}


@pytest.mark.parametrize("cmdline, held", [
    (b"/process_api\0--firecracker-init\0", False),  # not an agent: what it holds is no agent's
    (b"/usr/bin/python3\0-m\0otel_kubeskoop\0run\0", None),  # an agent we cannot look into
], ids=["init", "agent"])
def test_a_process_whose_descriptors_cannot_be_read_counts_only_if_it_is_an_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cmdline: bytes, held: bool | None) -> None:
    proc = fake_proc(tmp_path, {})
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(cmdline)
    # Root cannot be refused a readlink in a temporary tree: the kernel's answer is given here.
    monkeypatch.setattr(tc_owner, "read_held_programs", lambda root: HeldPrograms({}, (1,)))
    holders = tc_owner.Holders(proc)
    assert holders.held(EARLIER) is held
    assert bool(holders.incomplete) is (held is None)
