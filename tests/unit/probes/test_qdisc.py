# SPDX-License-Identifier: Apache-2.0
"""qdisc over recorded rtnetlink answers (a fake kernel per namespace; no root)."""

from __future__ import annotations

from pathlib import Path

from pyroute2.netlink import NETLINK_ROUTE
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETQDISC

from otel_kubeskoop.netlink.sockets import NetnsSockets
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import qdisc
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.fakes import FakeNs, RecordedSocket, opener

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"
IF, KIND, HANDLE, PARENT = "network.interface.name", "kubeskoop.qdisc.kind", "kubeskoop.qdisc.handle", "kubeskoop.qdisc.parent"


def answers(qdiscs: str = "rtm_getqdisc_htb_tbf.dump") -> dict:
    qd, _ = read_dump(DUMPS / qdiscs)
    links, _ = read_dump(DUMPS / "rtm_getlink.dump")
    return {(RTM_GETQDISC, 0): qd, (RTM_GETLINK, 0): links}


def run(per_ns: dict) -> tuple[dict, ProbeContext]:
    ctx = ProbeContext("qdisc", cycle=Cycle(namespaces={inode: FakeNs(inode) for inode in per_ns}))
    probe = qdisc.SPEC.factory(qdisc.SPEC.args(), ctx)
    probe.sockets = NetnsSockets(NETLINK_ROUTE, opener=opener(lambda inode: RecordedSocket(per_ns[inode])))
    out = {}
    for s in probe.collect():
        key = (s.instrument.name, s.netns, s.attributes)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    probe.stop()
    return out, ctx


def test_parent_and_child_are_separate_series_named_inside_the_namespace():
    got, ctx = run({5: answers()})
    assert ctx.errors == []
    _, names = read_dump(DUMPS / "rtm_getlink.dump")
    _, recorded = read_dump(DUMPS / "rtm_getqdisc_htb_tbf.dump")
    dev = names["2"]
    htb = ((IF, dev), (KIND, "htb"), (HANDLE, "1:"), (PARENT, "root"))
    tbf = ((IF, dev), (KIND, "tbf"), (HANDLE, "10:"), (PARENT, "1:1"))
    ingress = ((IF, dev), (KIND, "ingress"), (HANDLE, "ffff:"), (PARENT, "ffff:fff1"))
    lo = ((IF, "lo"), (KIND, "noqueue"), (HANDLE, "0:"), (PARENT, "root"))
    assert {k[2] for k in got} == {htb, tbf, ingress, lo}
    assert len(got) == 4 * 7
    for q in recorded:  # each qdisc's counters as recorded (tc -s agreed when they were)
        attrs = ((IF, names[str(q["ifindex"])]), (KIND, q["kind"]), (HANDLE, q["handle_text"]), (PARENT, q["parent_text"]))
        for word in ("bytes", "packets", "drops", "requeues", "overlimits", "qlen", "backlog"):
            assert got[(f"kubeskoop.qdisc.{word}", 5, attrs)] == q[word], (attrs, word)
    # The recording blasted the tbf child: it and its htb parent both counted the drops; they
    # stay two series (a sum would count every drop twice).
    assert got[("kubeskoop.qdisc.drops", 5, tbf)] > 0
    assert got[("kubeskoop.qdisc.drops", 5, htb)] == got[("kubeskoop.qdisc.drops", 5, tbf)]
    assert got[("kubeskoop.qdisc.drops", 5, ingress)] == got[("kubeskoop.qdisc.drops", 5, lo)] == 0


def test_legacy_stats_and_a_malformed_namespace():
    got, ctx = run({5: answers("rtm_getqdisc_legacy_stats.dump"), 6: answers("rtm_getqdisc_nested_overrun.dump")})
    assert {k[1] for k in got} == {5}
    assert len(ctx.errors) == 1
    _, recorded = read_dump(DUMPS / "rtm_getqdisc_htb_tbf.dump")
    assert sum(v for k, v in got.items() if k[0] == "kubeskoop.qdisc.drops") == sum(q["drops"] for q in recorded)
    assert not [v for k, v in got.items() if k[0] == "kubeskoop.qdisc.requeues" and v]  # legacy: none


def test_compat_names_are_upstreams_and_requeues_has_none():
    specs = {s.name.rsplit(".", 1)[1]: s for s in qdisc.SPEC.instruments}
    assert specs["requeues"].compat is None
    assert {s.compat for s in specs.values() if s.compat} == {
        "kubeskoop_qdisc_bytes", "kubeskoop_qdisc_packets", "kubeskoop_qdisc_drops", "kubeskoop_qdisc_qlen",
        "kubeskoop_qdisc_backlog", "kubeskoop_qdisc_overlimits"}
    assert all(s.compat_exclude == ((IF, "lo"),) for s in specs.values())
