# SPDX-License-Identifier: Apache-2.0
"""The shared object (bpf/datapath.bpf.c) under a runtime: probes turned on and off by a live
reload change a bit, not the programs; each probe counts the same whether the others run or not;
everything is gone when the last one stops."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from otel_kubeskoop.bpf.generated.datapath import OBJECT as DATAPATH
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.config import parse
from otel_kubeskoop.probe import Cycle
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.vocabulary import instruments as I
from tests.privileged.netnsutil import netns, tcp_refused

pytestmark = pytest.mark.privileged

DROPS = "kubeskoop.packetloss.total"


def probes(*names: str):
    return parse({"address": "", "metrics": {"probes": [{"name": n} for n in names]}}, "t",
                 environ={}).probes


def loaded_ids() -> set[int]:
    """The ids of every BPF program the kernel holds (other processes' too)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                         check=True).stdout
    return {prog["id"] for prog in json.loads(out)}


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.05)


def program_ids(rt: ProbeRuntime) -> dict[str, int]:
    """The shared object's loaded programs -> their kernel ids (from /proc/self/fdinfo)."""
    shared = rt.objects.get("datapath")
    assert shared is not None and shared.obj is not None
    out = {}
    for name, fd in shared.obj.program_fds().items():
        with open(f"/proc/self/fdinfo/{fd}") as f:
            out[name] = next(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
    return out


def drops(rt: ProbeRuntime, cycle: Cycle, inode: int) -> int:
    """TCP packets packetloss counted as dropped in namespace ``inode``."""
    return sum(s.value for s in rt.collect(cycle) if s.instrument.name == DROPS
               and s.netns == inode and ("network.transport", "tcp") in s.attributes)


def test_a_probe_turned_on_and_off_live_leaves_the_shared_programs_attached():
    discovery = NetnsDiscovery()
    rt = ProbeRuntime(probes("kernellatency", "netiftxlat"))
    try:
        rt.start(Cycle(discovery.scan()))
        ids = program_ids(rt)
        assert set(ids.values()) <= loaded_ids()
        shared = rt.objects.get("datapath")
        hooks = shared.obj.attached_hooks
        assert {"queue", "free", "consume", "rx", "deliver", "start", "xmit"} <= hooks
        assert rt.apply(probes("kernellatency", "netiftxlat", "packetloss")).added == ["packetloss"]
        assert program_ids(rt) == ids and shared.enabled == 0b111  # no program reloaded
        assert rt.apply(probes("kernellatency", "netiftxlat")).removed == ["packetloss"]
        assert program_ids(rt) == ids and shared.enabled == 0b110
        assert shared.obj.attached_hooks == hooks  # no hook detached
        assert rt.apply(probes("netiftxlat")).removed == ["kernellatency"]
        assert program_ids(rt) == ids and shared.enabled == 0b100
        assert rt.apply(probes()).removed == ["netiftxlat"]
        assert shared.obj is None  # the last one closed it
        wait_for(lambda: not set(ids.values()) & loaded_ids())  # freed after an RCU grace period
    finally:
        rt.stop()
        discovery.close()


def test_packetloss_counts_the_same_with_the_latency_probes_on_and_off():
    discovery = NetnsDiscovery()
    rt = ProbeRuntime(probes("packetloss"))
    try:
        with netns() as ns:
            ns.sleeper()
            cycle = Cycle({i: n for i, n in discovery.scan().items() if i == ns.inode})
            rt.start(cycle)
            counted = []
            for others in ((), ("kernellatency", "netiftxlat", "socketlatency"), ()):
                changes = rt.apply(probes("packetloss", *others))
                assert not changes.failed and "packetloss" not in changes.restarted, changes
                first = drops(rt, cycle, ns.inode)
                tcp_refused(ns, 25)
                counted.append(drops(rt, cycle, ns.inode) - first)
            assert counted == [25, 25, 25]
    finally:
        rt.stop()
        discovery.close()


def test_bpf_stats_count_each_probe_in_the_shared_programs():
    rt = ProbeRuntime(probes("packetloss", "netiftxlat"))

    def runs() -> dict[str, int]:
        return {dict(s.attributes)["kubeskoop.bpf.program"]: (dict(s.attributes)["kubeskoop.probe"], s.value)
                for s in rt.self_samples() if s.instrument is I.AGENT_BPF_RUNS}

    def misses() -> dict[str, tuple[str, int]]:
        return {dict(s.attributes)["kubeskoop.bpf.program"]: (dict(s.attributes)["kubeskoop.probe"], s.value)
                for s in rt.self_samples() if s.instrument is I.AGENT_BPF_RECURSION_MISSES}

    try:
        rt.start(Cycle())
        assert runs() == {}
        # Recursion misses are read with statistics off too, named as the handlers' runs are:
        # the shared program's count on each hook the probe runs on.
        assert {name for name, (probe, _) in misses().items() if probe == "netiftxlat"} == {
            f"netiftxlat_{hook}_btf" for hook in ("queue", "start", "xmit", "free", "consume")}
        assert all(isinstance(n, int) and n >= 0 for _, n in misses().values())
        assert rt.set_bpf_stats(True) == ""  # what a reload turning bpfStats.enabled on does
        with netns() as ns:
            tcp_refused(ns, 5)
        counted = runs()
        assert counted["packetloss_free_btf"][0] == "packetloss"
        assert counted["packetloss_free_btf"][1] >= 5, counted
        assert {name for name, (probe, _) in counted.items() if probe == "netiftxlat"} == {
            f"netiftxlat_{hook}_btf" for hook in ("queue", "start", "xmit", "free", "consume")}
        assert rt.set_bpf_stats(False) == ""
        assert runs() == {} and rt.objects.get("datapath").stats is False
    finally:
        rt.stop()


HELD = r"""
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
cli.sendall(b"x" * 10)
print("sent", flush=True)
sys.stdin.readline()
assert conn.recv(100) == b"x" * 10
print("read", flush=True)
"""


def test_a_probe_started_again_ignores_the_starts_it_recorded_before():
    """socketlatency is stopped while data waits unread and started again while packetloss keeps
    the object loaded: the read's wait began before it started, so it is not measured."""
    discovery = NetnsDiscovery()
    rt = ProbeRuntime(probes("packetloss", "socketlatency"))
    try:
        with netns() as ns:
            cycle = Cycle({i: n for i, n in discovery.scan().items() if i == ns.inode})
            rt.start(cycle)
            proc = ns.popen(sys.executable, "-c", HELD, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
            assert proc.stdout.readline() == b"sent\n"  # its "ready" start is recorded
            assert rt.apply(probes("packetloss")).removed == ["socketlatency"]
            assert rt.objects.get("datapath").obj is not None  # packetloss keeps it loaded
            time.sleep(0.3)
            assert rt.apply(probes("packetloss", "socketlatency")).added == ["socketlatency"]
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"read\n"
            proc.wait(10)
            reads = [s for s in rt.collect(cycle) if s.instrument.name == "kubeskoop.socketlatency.duration"
                     and s.netns == ns.inode and ("network.io.direction", "receive") in s.attributes]
            assert sum(sum(s.value.counts) for s in reads) == 0, reads  # no 300 ms wait measured
    finally:
        rt.stop()
        discovery.close()


def test_without_dns_dynptr_the_packet_hooks_keep_a_btf_program():
    """A kernel that refuses bpf_dynptr_from_skb() in tp_btf programs (dns.bpf.h) rejects
    datapath_queue_btf and datapath_rx_btf; their variants without it load next, so the probes on
    those hooks keep tp_btf and do not all fall back to the classic tracepoints."""
    obj = BPFObject.of(DATAPATH, partial=True)
    for program in ("datapath_queue_btf", "datapath_rx_btf"):
        obj.rejected[program] = "refused (test: no dynptr over an skb in tp_btf programs)"
    try:
        obj.start()
        loaded = set(obj.program_fds())
        assert {"datapath_queue_linear_btf", "datapath_rx_linear_btf"} <= loaded
        assert not {"datapath_queue_btf", "datapath_rx_btf", "datapath_queue_tp", "datapath_rx_tp"} & loaded
        assert {"queue", "rx"} <= obj.attached_hooks
    finally:
        obj.close()
