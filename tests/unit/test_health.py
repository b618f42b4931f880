# SPDX-License-Identifier: Apache-2.0
"""What makes a running agent not ready: probes refused for want of a privilege (reported failed,
logged once then at most once a minute), namespaces past the descriptor budget, descriptors
nearly exhausted."""

from __future__ import annotations

import errno
import logging

import pytest

from otel_kubeskoop import capabilities, health, limits, runtime
from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Kind, NoArgs, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.runtime import ProbeRuntime, State
from otel_kubeskoop.vocabulary import instruments as I
from tests.unit.test_runtime import NOPORTS, Good, self_metric


class RefusedInPods(Good):
    """Reads the host's namespace, and is refused setns into each pod's (as without CAP_SYS_ADMIN)."""

    def collect(self):
        for inode in (4026532281, 4026532282, 4026532283):
            self.ctx.report(PermissionError(errno.EPERM, f"setns(CLONE_NEWNET) into network namespace {inode}: "
                                                         "Operation not permitted"))
        return [Sample(NOPORTS, 1, 4026531840)]


class RefusedDeepDown(Good):
    def collect(self):
        try:
            raise PermissionError(errno.EACCES, "Permission denied")
        except PermissionError as cause:
            raise OSError("flow: TC filters left on eth0") from cause


def make(*factories: type) -> ProbeRuntime:
    specs = {f.__name__.lower(): ProbeSpec(f.__name__.lower(), "t", frozenset({Kind.METRICS}), Source.PROCFS,
                                           Scope.NETNS, Overhead.LOW, "n/a", False, f, (NOPORTS,), NoArgs)
             for f in factories}
    rt = ProbeRuntime([ProbeConfig(name, Kind.METRICS, NoArgs()) for name in specs], registry=specs)
    rt.start(Cycle())
    return rt


def test_a_probe_refused_for_want_of_privilege_is_failed_logged_once_and_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    rt = make(RefusedInPods, Good)
    with caplog.at_level(logging.WARNING, logger="otel_kubeskoop.runtime"):
        for _ in range(11):  # about what the agent did in a second without capabilities
            samples = rt.collect(Cycle())
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(
        "probe refusedinpods failed: lacks a privilege: PermissionError: [Errno 1] setns(CLONE_NEWNET) "
        "into network namespace 4026532281: Operation not permitted")
    status = {s["name"]: s for s in rt.status()}["refusedinpods"]
    assert status["state"] == "failed" and status["denials"] == 33
    assert status["reason"].startswith("lacks a privilege (33 operations refused): PermissionError")
    assert self_metric(samples, I.AGENT_PROBE_STATE, probe="refusedinpods", **{"kubeskoop.probe.state": "failed"}) == [1]
    assert [s.value for s in samples if s.instrument is NOPORTS] == [1, 1]  # the host's read, and Good's
    assert set(rt.denied()) == {"refusedinpods"}
    assert {s["name"]: s for s in rt.status()}["good"]["state"] == "running"


def test_later_refusals_are_summed_up_at_most_once_a_minute(caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        now = 1000.0

        def monotonic(self) -> float:
            return self.now

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(runtime, "time", clock)
    rt = make(RefusedInPods)
    with caplog.at_level(logging.WARNING, logger="otel_kubeskoop.runtime"):
        for second in range(61):  # one collection a second for a minute
            clock.now = 1000.0 + second
            rt.collect(Cycle())
    assert [r.getMessage().split(": ", 1)[0] for r in caplog.records] == [
        "probe refusedinpods failed", "probe refusedinpods"]
    assert caplog.records[1].getMessage().startswith(
        "probe refusedinpods: 180 more operations refused for want of a privilege (last: PermissionError")


def test_the_reason_names_the_capabilities_the_probe_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "held", lambda: frozenset({"CAP_SYS_PTRACE"}))
    rt = make(RefusedInPods)
    rt.collect(Cycle())
    assert rt.denied()["refusedinpods"].endswith(
        "Operation not permitted; needs CAP_SYS_ADMIN (setns into other network namespaces)")


def test_a_refusal_anywhere_in_the_cause_chain_counts() -> None:
    rt = make(RefusedDeepDown)
    rt.collect(Cycle())
    (name, why), = rt.denied().items()  # "; needs ..." follows where this process lacks them
    assert name == "refuseddeepdown" and why.startswith("OSError: flow: TC filters left on eth0")
    assert rt.runs[0].reported_state is State.FAILED


@pytest.mark.parametrize("denied, left_out, open_fds, expected", [
    ({}, 0, 100, []),
    ({"tcpsummary": "PermissionError: [Errno 1] Operation not permitted"}, 0, 100,
     ["probe tcpsummary lacks a privilege: PermissionError: [Errno 1] Operation not permitted"]),
    ({}, 845, 500, ["845 of 1101 network namespaces not watched: more than the file-descriptor limit "
                    "(1024) can hold"]),
    ({}, 0, 922, ["922 of 1024 file descriptors open"]),
    ({}, 0, 921, []),
])
def test_problems(denied: dict[str, str], left_out: int, open_fds: int, expected: list[str]) -> None:
    assert health.problems(denied=denied, left_out=left_out, found=1101 if left_out else 10,
                           open_fds=open_fds, soft_limit=1024) == expected


M, E = Kind.METRICS, Kind.EVENTS


@pytest.mark.parametrize("probes, per_namespace, cap", [
    ([("netdev", M), ("tcp", M)], 3, 256),  # the handle and a thread's two while it enters
    ([("netdev", M), ("tcpsummary", M), ("qdisc", M)], 5, 153),  # and a socket per netlink probe
    ([("conntrack", M), ("conntrack", E)], 5, 153),  # conntrack for metrics and events: two sockets
])
def test_namespace_cap(probes: list[tuple[str, Kind]], per_namespace: int, cap: int) -> None:
    configs = [ProbeConfig(name, kind, NoArgs()) for name, kind in probes]
    assert limits.per_namespace(configs) == per_namespace
    assert limits.namespace_cap(1024, configs) == cap
    assert limits.namespace_cap(1 << 20, configs) == ((1 << 20) - limits.RESERVE) // per_namespace


@pytest.mark.parametrize("refused, ptrace, expected", [
    (0, False, []),
    (1, True, []),  # a process more privileged than the agent (the node's init, say)
    (212, False, ["the network namespaces of 212 processes cannot be read without CAP_SYS_PTRACE: "
                  "their pods are not watched"]),
])
def test_a_scan_refused_without_ptrace_is_a_problem(refused: int, ptrace: bool, expected: list[str]) -> None:
    assert health.problems(denied={}, left_out=0, found=1, open_fds=10, soft_limit=1024,
                           scan_refused=refused, ptrace=ptrace) == expected
