# SPDX-License-Identifier: Apache-2.0
"""Per-peer figures without a kernel: the drained (namespace, address) entries of tcprtt's and
tcpconnect's "remotes" maps folded into cumulative totals per remote, capped per namespace with
an overflow bucket whose use is counted, and forgotten with their namespace."""

from __future__ import annotations

import pytest

from otel_kubeskoop.bpf.generated.tcpconnect import TcpconnectOutcome as O
from otel_kubeskoop.bpf.generated.tcpconnect import TcpconnectRemote
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import tcpconnect, tcprtt
from otel_kubeskoop.topology.peers import UNKNOWN
from otel_kubeskoop.topology.remotes import RemoteDirectory
from tests.unit.probes.bpfdumps import FakeMap
from tests.unit.probes.latencyfakes import hist, latency_object, samples_by_key
from tests.unit.probes.remotefakes import remote_key, remote_maps

A_NS, B_NS = 4026532281, 4026532282
PEERS = {"10.244.1.5": ("pod", "node-a", "shop", "web-1")}
REMOTE = RemoteDirectory(lambda ip: PEERS.get(ip, UNKNOWN), {"10.96.41.7": ("shop", "checkout")}.get)
WEB = (("kubeskoop.remote.kind", "pod"), ("kubeskoop.remote.namespace", "shop"),
       ("kubeskoop.remote.name", "web-1"))
CHECKOUT = (("kubeskoop.remote.kind", "service"), ("kubeskoop.remote.namespace", "shop"),
            ("kubeskoop.remote.name", "checkout"))
EXTERNAL = (("kubeskoop.remote.kind", "external"),)
OVERFLOW = (("kubeskoop.remote.kind", "overflow"),)


def rtt_probe(max_remotes: int = 32, namespaces=(A_NS, B_NS)):
    ctx = ProbeContext(name="tcprtt", cycle=Cycle(namespaces={ns: object() for ns in namespaces}, remote=REMOTE))
    probe = tcprtt.TcprttProbe(tcprtt.TcprttArgs(maxRemotes=max_remotes), ctx)
    probe.bpf.obj = latency_object([])
    drain, maps = remote_maps(full=4)
    probe.bpf.obj.maps.update(maps)
    return probe, drain


def srtt(got, ns, attrs):
    return got[("kubeskoop.tcprtt.remote.srtt", ns, attrs)]


def test_addresses_fold_into_remotes_and_add_up_across_collections() -> None:
    probe, drain = rtt_probe()
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 2}, sum_ns=42_000_000))
    drain.put(remote_key(A_NS, "10.96.41.7"), hist({20: 1}, sum_ns=1_500_000))
    drain.put(remote_key(A_NS, "203.0.113.1"), hist({25: 1}, sum_ns=40_000_000))
    drain.put(remote_key(A_NS, "198.51.100.9"), hist({25: 3}, sum_ns=120_000_000))
    drain.put(remote_key(B_NS, "::ffff:10.244.1.5"), hist({10: 1}, sum_ns=1500))
    got = samples_by_key(probe.collect())
    assert srtt(got, A_NS, WEB).counts[24] == 2 and srtt(got, A_NS, WEB).sum == pytest.approx(0.042)
    assert sum(srtt(got, A_NS, CHECKOUT).counts) == 1
    # Two external addresses are one remote.
    assert srtt(got, A_NS, EXTERNAL).counts[25] == 4 and srtt(got, A_NS, EXTERNAL).sum == pytest.approx(0.16)
    assert srtt(got, B_NS, WEB).counts[10] == 1  # an IPv4-mapped peer of a dual-stack socket
    assert got[("kubeskoop.agent.bpf.map.full", None,
                (("kubeskoop.probe", "tcprtt"), ("kubeskoop.bpf.map", "remotes")))] == 4
    assert got[("kubeskoop.agent.overflow", None, (("kubeskoop.cap", "tcprtt.remotes"),))] == 0
    # The kernel map was emptied; the next drain's entries add to the totals.
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}, sum_ns=21_000_000))
    got = samples_by_key(probe.collect())
    assert srtt(got, A_NS, WEB).counts[24] == 3 and srtt(got, A_NS, WEB).sum == pytest.approx(0.063)
    assert sum(srtt(got, A_NS, EXTERNAL).counts) == 4  # cumulative: still there, unchanged
    assert drain.drains == 2


def test_past_the_cap_a_namespace_s_new_remotes_go_to_overflow_and_are_counted() -> None:
    probe, drain = rtt_probe(max_remotes=2)
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}))
    drain.put(remote_key(A_NS, "10.96.41.7"), hist({24: 1}))
    drain.put(remote_key(A_NS, "203.0.113.1"), hist({24: 5}))
    drain.put(remote_key(A_NS, "203.0.113.2"), hist({24: 7}))
    drain.put(remote_key(B_NS, "203.0.113.1"), hist({24: 1}))  # another namespace: its own cap
    got = samples_by_key(probe.collect())
    a = {attrs: sum(v.counts) for (name, ns, attrs), v in got.items()
         if ns == A_NS and name == "kubeskoop.tcprtt.remote.srtt"}
    assert a == {WEB: 1, CHECKOUT: 1, OVERFLOW: 12}
    assert sum(srtt(got, B_NS, EXTERNAL).counts) == 1
    assert got[("kubeskoop.agent.overflow", None, (("kubeskoop.cap", "tcprtt.remotes"),))] == 2
    # A remote that has its slot keeps it; a new one still overflows.
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}))
    drain.put(remote_key(A_NS, "203.0.113.3"), hist({24: 1}))
    got = samples_by_key(probe.collect())
    assert sum(srtt(got, A_NS, WEB).counts) == 2 and sum(srtt(got, A_NS, OVERFLOW).counts) == 13
    assert got[("kubeskoop.agent.overflow", None, (("kubeskoop.cap", "tcprtt.remotes"),))] == 3


def test_a_gone_namespace_s_totals_are_forgotten() -> None:
    probe, drain = rtt_probe()
    drain.put(remote_key(B_NS, "10.244.1.5"), hist({24: 1}))
    assert ("kubeskoop.tcprtt.remote.srtt", B_NS, WEB) in samples_by_key(probe.collect())
    probe.bpf.ctx.cycle = Cycle(namespaces={A_NS: object()}, remote=REMOTE)
    for _ in range(3):  # past the reconciler's grace
        got = samples_by_key(probe.collect())
    assert not [k for k in got if k[1] == B_NS]
    assert probe.remotes._totals == {}


def test_without_a_classifier_only_loopback_is_told_apart() -> None:
    probe, drain = rtt_probe()
    probe.bpf.ctx.cycle = Cycle(namespaces={A_NS: object()})
    drain.put(remote_key(A_NS, "127.0.0.1"), hist({12: 1}))
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}))
    got = samples_by_key(probe.collect())
    assert sum(srtt(got, A_NS, (("kubeskoop.remote.kind", "loopback"),)).counts) == 1
    assert sum(srtt(got, A_NS, EXTERNAL).counts) == 1


def test_max_remotes_zero_reads_no_peers() -> None:
    probe, drain = rtt_probe(max_remotes=0)
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}))
    got = samples_by_key(probe.collect())
    assert not [k for k in got if k[0] == "kubeskoop.tcprtt.remote.srtt"] and drain.drains == 0


def connect_value(outcomes: dict[int, int], latency: dict[int, int] | None = None, sum_ns: int = 0):
    value = TcpconnectRemote()
    for outcome, n in outcomes.items():
        value.outcomes[outcome] = n
    value.duration = hist(latency or {}, sum_ns=sum_ns)
    return value


def test_connect_attempts_failures_and_latency_per_remote() -> None:
    ctx = ProbeContext(name="tcpconnect", cycle=Cycle(namespaces={A_NS: object()}, remote=REMOTE))
    probe = tcpconnect.TcpconnectProbe(None, ctx)
    obj = latency_object([])
    obj.maps["counters"] = FakeMap([])
    obj.maps["counters_full"] = FakeMap({0: 0})
    drain, maps = remote_maps()
    obj.maps.update(maps)
    probe.bpf.obj = obj
    drain.put(remote_key(A_NS, "10.244.1.5"),
              connect_value({O.TCPCONNECT_ATTEMPT: 3, O.TCPCONNECT_ESTABLISHED: 2, O.TCPCONNECT_REFUSED: 1},
                            {17: 2}, sum_ns=300_000))
    drain.put(remote_key(A_NS, "10.96.41.7"), connect_value({O.TCPCONNECT_ATTEMPT: 1, O.TCPCONNECT_TIMEOUT: 1}))
    got = samples_by_key(probe.collect())
    remote = {(name.rsplit(".", 1)[1], attrs): v for (name, ns, attrs), v in got.items()
              if ns == A_NS and ".remote." in name and name != "kubeskoop.tcpconnect.remote.duration"}
    assert remote == {("attempts", WEB): 3, ("failures", (("error.type", "refused"), *WEB)): 1,
                      ("attempts", CHECKOUT): 1, ("failures", (("error.type", "timed_out"), *CHECKOUT)): 1}
    duration = got[("kubeskoop.tcpconnect.remote.duration", A_NS, WEB)]
    assert duration.counts[17] == 2 and duration.sum == pytest.approx(0.0003)
    assert sum(got[("kubeskoop.tcpconnect.remote.duration", A_NS, CHECKOUT)].counts) == 0
    assert got[("kubeskoop.agent.overflow", None, (("kubeskoop.cap", "tcpconnect.remotes"),))] == 0
    assert tcpconnect.TcpconnectArgs(maxRemotes=0).max_remotes == 0


def test_until_services_are_listed_external_addresses_wait() -> None:
    listed = {"done": False}
    remote = RemoteDirectory(lambda ip: PEERS.get(ip, UNKNOWN),
                             lambda ip: ("shop", "checkout") if listed["done"] and ip == "10.96.41.7" else None,
                             lambda: listed["done"])
    probe, drain = rtt_probe()
    probe.bpf.ctx.cycle = Cycle(namespaces={A_NS: object()}, remote=remote)
    drain.put(remote_key(A_NS, "10.244.1.5"), hist({24: 1}))
    drain.put(remote_key(A_NS, "10.96.41.7"), hist({20: 2}))
    got = samples_by_key(probe.collect())
    # The pod is named at once; the address that may be a Service's waits.
    assert {attrs for (name, ns, attrs) in got if name == "kubeskoop.tcprtt.remote.srtt"} == {WEB}
    listed["done"] = True
    drain.put(remote_key(A_NS, "10.96.41.7"), hist({20: 1}))
    got = samples_by_key(probe.collect())
    assert sum(srtt(got, A_NS, CHECKOUT).counts) == 3 and (
        "kubeskoop.tcprtt.remote.srtt", A_NS, EXTERNAL) not in got
