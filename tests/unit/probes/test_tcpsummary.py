# SPDX-License-Identifier: Apache-2.0
"""tcpsummary over recorded sock_diag answers (a fake kernel per namespace; no root)."""

from __future__ import annotations

import socket
from pathlib import Path

from pyroute2.netlink import NETLINK_SOCK_DIAG
from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY

from otel_kubeskoop.netlink.core import DecodeError
from otel_kubeskoop.netlink.sockets import NetnsSockets
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import tcpsummary
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.fakes import FakeNs, RecordedSocket, opener

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"
STATE = "network.connection.state"


def answers(v4_name: str = "sock_diag_tcp_v4.dump") -> dict:
    v4, _ = read_dump(DUMPS / v4_name)
    v6, _ = read_dump(DUMPS / "sock_diag_tcp_v6.dump")
    return {(SOCK_DIAG_BY_FAMILY, socket.AF_INET): v4, (SOCK_DIAG_BY_FAMILY, socket.AF_INET6): v6}


def run(namespaces: dict, per_ns: dict) -> tuple[dict, ProbeContext, tcpsummary.TcpSummaryProbe]:
    ctx = ProbeContext("tcpsummary", cycle=Cycle(namespaces=namespaces))
    probe = tcpsummary.SPEC.factory(tcpsummary.SPEC.args(), ctx)
    probe.sockets = NetnsSockets(NETLINK_SOCK_DIAG, opener=opener(lambda inode: RecordedSocket(per_ns[inode])))
    out = {}
    for s in probe.collect():
        key = (s.instrument.name, s.netns, s.attributes)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    return out, ctx, probe


def test_values_per_namespace():
    got, ctx, probe = run({7: FakeNs(7), 8: FakeNs(8)}, {7: answers(), 8: answers()})
    assert ctx.errors == []
    # v4: 2 listeners (3 + 0 queued, limits 4 and 10), 8 established, 1 TIME_WAIT, 150 unread bytes;
    # v6: 1 listener, 2 established, 10 unread bytes.
    assert got[("kubeskoop.tcpsummary.tcpestablishedconn", 7, ())] == 10
    assert got[("kubeskoop.tcpsummary.tcptimewaitconn", 7, ())] == 1
    assert got[("kubeskoop.tcpsummary.tcpclosewaitconn", 7, ())] == 0
    assert got[("kubeskoop.tcpsummary.tcprxqueue", 7, ())] == 160
    assert got[("kubeskoop.tcpsummary.tcptxqueue", 7, ())] == 0
    assert got[("kubeskoop.tcpsummary.tcplistenbacklog", 7, ())] == 3
    assert got[("kubeskoop.tcpsummary.tcplistenbacklog.utilization", 7, ())] == 0.75
    assert got[("kubeskoop.tcpsummary.tcpconn", 7, ((STATE, "listen"),))] == 3
    assert len([k for k in got if k[0] == "kubeskoop.tcpsummary.tcpconn" and k[1] == 8]) == 11
    assert {k[1] for k in got} == {7, 8}
    probe.stop()
    assert len(probe.sockets) == 0


def test_one_broken_namespace_leaves_the_others_and_is_reopened():
    got, ctx, probe = run({7: FakeNs(7), 8: FakeNs(8)},
                          {7: answers("sock_diag_tcp_v4_truncated.dump"), 8: answers()})
    assert {k[1] for k in got} == {8}
    (err,) = ctx.errors
    assert isinstance(err, DecodeError)
    assert 7 not in probe.sockets and 8 in probe.sockets  # the broken one is reopened next time


def test_a_namespace_gone_before_its_socket_is_made_is_skipped_quietly():
    from otel_kubeskoop.topology.netns import NetnsGone

    got, ctx, _ = run({7: FakeNs(7, gone=NetnsGone(7, "exited")), 8: FakeNs(8)}, {8: answers()})
    assert {k[1] for k in got} == {8} and ctx.errors == []
