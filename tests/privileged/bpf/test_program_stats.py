# SPDX-License-Identifier: Apache-2.0
"""bpfStats: each program's run count and run time become self-metrics, through the runtime."""

from __future__ import annotations

import socket

import pytest

from otel_kubeskoop.bpf import selftest
from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Kind, NoArgs, Overhead, ProbeSpec, Scope, Source
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.vocabulary import instruments as I

pytestmark = pytest.mark.privileged


class SelftestProbe:
    """A minimal BPF probe over the selftest object: what the runtime sees of a real one."""

    def __init__(self, args, ctx):
        self.obj = None

    def start(self):
        self.obj = selftest.open_selftest()
        self.obj.start()

    def collect(self):
        return []

    def bpf_programs(self):
        return self.obj.program_fds()

    def stop(self):
        if self.obj is not None:
            self.obj.close()


SPEC = ProbeSpec("selftest", "t", frozenset({Kind.METRICS}), Source.BPF, Scope.NODE, Overhead.LOW, "n/a",
                 False, SelftestProbe, (), NoArgs)


def refused_connects(n: int) -> None:
    for _ in range(n):
        with socket.socket() as s:
            with pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", 9))


def test_run_count_and_time_per_program():
    rt = ProbeRuntime([ProbeConfig("selftest", Kind.METRICS, NoArgs())], registry={"selftest": SPEC}, bpf_stats=True)
    rt.start(Cycle())
    try:
        assert rt.program_stats is not None, "BPF_ENABLE_STATS (kernel 5.8+) should work here"
        before = {s.attributes: s.value for s in rt.self_samples() if s.instrument is I.AGENT_BPF_RUNS}
        refused_connects(10)
        samples = rt.self_samples()
        runs = {dict(s.attributes)["kubeskoop.bpf.program"]: s.value - before[s.attributes]
                for s in samples if s.instrument is I.AGENT_BPF_RUNS}
        times = {dict(s.attributes)["kubeskoop.bpf.program"]: s.value for s in samples if s.instrument is I.AGENT_BPF_TIME}
        # Each refused connect runs the reset hook (tcp_receive_reset) and the drop hook (kfree_skb)
        # at least once; other loopback traffic on the machine may add to the drop hook.
        reset = next(name for name in runs if "reset" in name)
        assert runs[reset] == 10
        assert all(v >= 10 for v in runs.values())
        assert all(t > 0 for t in times.values())
    finally:
        rt.stop()
    assert rt.program_stats is None
