# SPDX-License-Identifier: Apache-2.0
"""Probe isolation: one probe's failure never reaches another, and every failure is visible."""

from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Kind, NoArgs, Overhead, ProbeSpec, Sample, Scope, Source, Unavailable
from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.runtime import ProbeRuntime, State
from otel_kubeskoop.probes import udp
from otel_kubeskoop.vocabulary import instruments as I

NOPORTS = next(i for i in udp.INSTRUMENTS if i.key == "NoPorts")


class Good:
    def __init__(self, args, ctx):
        self.ctx = ctx
        self.stopped = 0

    def start(self):
        pass

    def collect(self):
        return [Sample(NOPORTS, 1, 42)]

    def stop(self):
        self.stopped += 1


class Raises(Good):
    def collect(self):
        raise RuntimeError("boom")


class Partial(Good):
    def collect(self):
        self.ctx.report(ParseError("/proc/9/net/snmp", "bad", 3))
        return [Sample(NOPORTS, 2, 43)]


class NoKernel(Good):
    def start(self):
        raise Unavailable("needs IPVS")


class Broken(Good):
    def start(self):
        raise OSError(13, "Permission denied")


class StopRaises(Good):
    def stop(self):
        raise RuntimeError("stop failed")


def spec(name, factory):
    return ProbeSpec(name, "test", frozenset({Kind.METRICS}), Source.PROCFS, Scope.NETNS, Overhead.LOW, "n/a",
                     False, factory, (NOPORTS,), NoArgs)


REGISTRY = {s.name: s for s in (spec("good", Good), spec("raises", Raises), spec("partial", Partial),
                                spec("nokernel", NoKernel), spec("broken", Broken), spec("stopraises", StopRaises))}


def runtime(*names):
    probes = [ProbeConfig(n, Kind.METRICS, NoArgs()) for n in names]
    rt = ProbeRuntime(probes, registry=REGISTRY)
    rt.start(Cycle())
    return rt


def by_name(rt):
    return {r.name: r for r in rt.runs}


def self_metric(samples, instrument, **attrs):
    want = {("kubeskoop.probe", attrs.pop("probe"))} | set(attrs.items())
    return [s.value for s in samples if s.instrument is instrument and want <= set(s.attributes)]


def test_failures_are_isolated_and_counted():
    rt = runtime("good", "raises", "partial", "nokernel", "broken", "stopraises")
    runs = by_name(rt)
    assert runs["nokernel"].state is State.UNAVAILABLE and runs["nokernel"].reason == "needs IPVS"
    assert runs["broken"].state is State.FAILED and "Permission denied" in runs["broken"].reason
    for _ in range(3):
        samples = rt.collect(Cycle())
    data = [(s.value, s.netns) for s in samples if s.instrument is NOPORTS]
    assert sorted(data) == [(1, 42), (1, 42), (2, 43)]  # good, stopraises, partial: the raiser gave none
    assert self_metric(samples, I.AGENT_PROBE_ERRORS, probe="raises", **{"error.type": "RuntimeError"}) == [3]
    assert self_metric(samples, I.AGENT_PROBE_ERRORS, probe="partial", **{"error.type": "ParseError"}) == [3]
    assert self_metric(samples, I.AGENT_PROBE_ERRORS, probe="good") == []
    assert self_metric(samples, I.AGENT_PROBE_STATE, probe="nokernel", **{"kubeskoop.probe.state": "unavailable"}) == [1]
    assert self_metric(samples, I.AGENT_PROBE_STATE, probe="raises", **{"kubeskoop.probe.state": "running"}) == [1]
    assert len(self_metric(samples, I.AGENT_PROBE_DURATION, probe="good")) == 1
    assert runs["partial"].last_error == "ParseError: /proc/9/net/snmp:3: bad"
    status = {s["name"]: s for s in rt.status()}
    assert status["raises"]["errors"] == {"RuntimeError": 3} and status["raises"]["last_error"] == "RuntimeError: boom"


def test_stop_is_idempotent_and_a_failing_stop_does_not_stop_the_others():
    rt = runtime("good", "stopraises")
    good = by_name(rt)["good"].probe
    rt.stop()
    rt.stop()
    assert good.stopped == 1
    assert all(r.state is State.STOPPED for r in rt.runs)
    assert by_name(rt)["stopraises"].errors["RuntimeError"] == 1


def test_probe_configured_for_both_kinds_runs_once():
    both = ProbeSpec("both", "t", frozenset({Kind.METRICS, Kind.EVENTS}), Source.BPF, Scope.NETNS, Overhead.LOW,
                     "n/a", False, Good, (NOPORTS,), NoArgs)
    rt = ProbeRuntime([ProbeConfig("both", Kind.METRICS, NoArgs()), ProbeConfig("both", Kind.EVENTS, NoArgs())],
                      registry={"both": both})
    rt.start(Cycle())
    metrics_run, events_run = rt.runs
    assert metrics_run.probe is events_run.probe and events_run.state is State.RUNNING
    assert len([s for s in rt.collect(Cycle()) if s.instrument is NOPORTS]) == 1
    assert len(self_metric(rt.self_samples(), I.AGENT_PROBE_STATE, probe="both")) == 1


class WithLosses(Good):
    def collect(self):
        lost = Sample(I.AGENT_EVENTS_LOST, 4, None, (("kubeskoop.probe", "events_only"), ("kubeskoop.loss.reason", "rate_limited")))
        return [Sample(NOPORTS, 1, 42), lost]


def test_an_events_only_probe_reports_its_losses_but_not_its_metrics():
    spec_ = ProbeSpec("events_only", "t", frozenset({Kind.METRICS, Kind.EVENTS}), Source.BPF, Scope.NETNS,
                      Overhead.LOW, "n/a", False, WithLosses, (NOPORTS,), NoArgs)
    rt = ProbeRuntime([ProbeConfig("events_only", Kind.EVENTS, NoArgs())], registry={"events_only": spec_})
    rt.start(Cycle())
    got = [s for s in rt.collect(Cycle()) if s.instrument in (NOPORTS, I.AGENT_EVENTS_LOST) and s.value == 4 or s.instrument is NOPORTS]
    assert [(s.instrument.name, s.value) for s in got] == [("kubeskoop.agent.events.lost", 4)]


class Limit(NoArgs):
    limit: int = 1


def test_apply_starts_stops_and_restarts_only_what_changed_and_a_failed_start_leaves_the_rest():
    registry = {**REGISTRY, "tuned": ProbeSpec("tuned", "test", frozenset({Kind.METRICS}), Source.PROCFS, Scope.NETNS,
                                               Overhead.LOW, "n/a", False, Good, (NOPORTS,), Limit)}
    rt = ProbeRuntime([ProbeConfig("good", Kind.METRICS, NoArgs()), ProbeConfig("tuned", Kind.METRICS, Limit()),
                       ProbeConfig("stopraises", Kind.METRICS, NoArgs())], registry=registry)
    rt.start(Cycle())
    good, tuned, stopraises = (by_name(rt)[n].probe for n in ("good", "tuned", "stopraises"))
    changes = rt.apply([ProbeConfig("good", Kind.METRICS, NoArgs()), ProbeConfig("tuned", Kind.METRICS, Limit(limit=2)),
                        ProbeConfig("broken", Kind.METRICS, NoArgs()), ProbeConfig("partial", Kind.METRICS, NoArgs())])
    assert (changes.added, changes.removed, changes.restarted) == (["broken", "partial"], ["stopraises"], ["tuned"])
    assert changes.failed == {"broken": by_name(rt)["broken"].reason} and "Permission denied" in changes.failed["broken"]
    runs = by_name(rt)
    assert runs["good"].probe is good and good.stopped == 0  # untouched
    assert runs["tuned"].probe is not tuned and tuned.stopped == 1 and runs["tuned"].state is State.RUNNING
    assert stopraises.stopped == 0 and "stopraises" not in runs  # its stop raised: counted, the reload went on
    assert runs["partial"].state is State.RUNNING and runs["broken"].state is State.FAILED
    assert sorted(s.netns for s in rt.collect(Cycle()) if s.instrument is NOPORTS) == [42, 42, 43]
