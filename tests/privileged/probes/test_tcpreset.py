# SPDX-License-Identifier: Apache-2.0
"""tcpreset on the real kernel: each reset type made on purpose in throw-away namespaces, with
the exact namespace, type and count checked in the kernel counters and in the events."""

from __future__ import annotations

import time

import pytest

from otel_kubeskoop.bpf import btf
from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import packetloss, tcpreset
from tests.privileged.netnsutil import netns, require_root, tcp_refused, veth_pair
from tests.privileged.probes.conftest import RAW_ACK, Harness, attrs, no_ipv6, serve, tcp6_refused
from tests.privileged.probes.latencyutil import with_kind

require_root()

pytestmark = pytest.mark.privileged

TOTAL = "kubeskoop.tcpreset.total"
TYPE = "kubeskoop.reset.type"


def by_type(h: Harness, netns: int) -> dict[str, int]:
    return {dict(a)[TYPE]: v for a, v in h.series("tcpreset", netns, TOTAL).items()}


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(tcpreset.SPEC)
    assert probe.bpf.chosen == {
        "send": AttachPoint("tp_btf", "tcp_send_reset"),
        "receive": AttachPoint("tp_btf", "tcp_receive_reset"),
    }
    assert probe.bpf.obj.rejected == {}


def test_syn_to_a_closed_port_is_nosock_and_a_no_socket_drop_in_that_namespace_only(
    harness: Harness,
) -> None:

    harness.start(tcpreset.SPEC)
    harness.start(packetloss.SPEC)
    with netns() as a, netns() as b:
        tcp_refused(a, 3)
        harness.drain()

        # Each connect: the SYN finds no socket (a NO_SOCKET drop and a RST from
        # tcp_v4_send_reset with sk NULL), and the connecting socket receives that RST.
        assert by_type(harness, a.inode) == {"nosock": 3, "receive": 3}
        assert harness.series("packetloss", a.inode, "kubeskoop.packetloss.total") == {
            (("kubeskoop.drop.reason", "NO_SOCKET"), ("network.type", "ipv4"),
             ("network.transport", "tcp")): 3,
        }
        assert harness.series("tcpreset", b.inode) == {}
        assert harness.series("packetloss", b.inode) == {}
        assert harness.events_in(b.inode) == []

        nosock = harness.events_in(a.inode, "kubeskoop.tcpreset.nosock")
        receive = harness.events_in(a.inode, "kubeskoop.tcpreset.receive")
        assert len(nosock) == len(receive) == 3
        now = time.time_ns()
        for e in nosock:
            got = attrs(e)
            assert e.upstream_type == "TCPRESET_NOSOCK"
            assert abs(e.timestamp_ns - now) < 30e9
            # The RST's own direction: from the closed port back to the connecting socket.
            assert (got["source.address"], got["source.port"]) == ("127.0.0.1", 9)
            assert got["destination.address"] == "127.0.0.1" and got["destination.port"] > 1024
            assert (got["network.type"], got["network.transport"]) == ("ipv4", "tcp")
            assert got["kubeskoop.reset.type"] == "nosock"
            assert got["kubeskoop.reset.reason"] == "NO_SOCKET"
            assert "network.connection.state" not in got  # no socket, no state
        # The receiving side names the same connection from its end, in SYN_SENT.
        assert sorted(attrs(e)["source.port"] for e in receive) == sorted(
            attrs(e)["destination.port"] for e in nosock)
        for e in receive:
            got = attrs(e)
            assert e.upstream_type == "TCPRESET_RECEIVE"
            assert got["network.connection.state"] == "syn_sent"
            assert (got["destination.address"], got["destination.port"]) == ("127.0.0.1", 9)
            assert "kubeskoop.reset.reason" not in got
        drops = harness.events_in(a.inode, "kubeskoop.packetloss.drop")
        assert [attrs(e)["kubeskoop.drop.reason"] for e in drops] == ["NO_SOCKET"] * 3


def test_linger_zero_close_is_active_and_the_peer_receives_it(harness: Harness) -> None:
    harness.start(tcpreset.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):  # a: 10.231.0.1, b: 10.231.0.2
            server = serve(a, "10.231.0.1", 8080)
            b.python(
                "import socket, struct, time\n"
                "c = socket.create_connection(('10.231.0.1', 8080)); time.sleep(0.1)\n"
                "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
                "c.close()\n"
            )
            time.sleep(0.2)
            harness.drain()
            server.kill()
            assert by_type(harness, b.inode) == {"active": 1}
            assert by_type(harness, a.inode) == {"receive": 1}

            (active,) = harness.events_in(b.inode)
            got = attrs(active)
            assert active.name == "kubeskoop.tcpreset.active"
            assert active.upstream_type == "TCPRESET_ACTIVE"
            assert (got["source.address"], got["destination.address"]) == ("10.231.0.2", "10.231.0.1")
            assert got["destination.port"] == 8080
            # tcp_disconnect() moves the socket to CLOSE before tcp_send_active_reset().
            assert got["network.connection.state"] == "closed"
            if "SK_RST_REASON_TCP_STATE" in btf.sk_rst_reasons().values():
                assert got["kubeskoop.reset.reason"] == "TCP_STATE"

            (received,) = harness.events_in(a.inode)
            got = attrs(received)
            assert received.name == "kubeskoop.tcpreset.receive"
            assert (got["source.address"], got["source.port"]) == ("10.231.0.1", 8080)
            assert got["destination.address"] == "10.231.0.2"
            assert got["network.connection.state"] == "established"


def test_a_packet_matching_a_listener_gets_a_process_reset(harness: Harness) -> None:
    harness.start(tcpreset.SPEC)
    with netns() as a:
        server = serve(a, "127.0.0.1", 8080, accept=False)
        a.python(RAW_ACK.format(port=8080, count=2))
        harness.drain()
        server.kill()
        assert by_type(harness, a.inode) == {"process": 2}
        events = harness.events_in(a.inode)
        assert [e.name for e in events] == ["kubeskoop.tcpreset.process"] * 2
        for e in events:
            got = attrs(e)
            assert e.upstream_type == "TCPRESET_PROCESS"
            assert got["network.connection.state"] == "listen"
            assert (got["source.address"], got["source.port"]) == ("127.0.0.1", 8080)
            if "SK_RST_REASON_TCP_FLAGS" in btf.sk_rst_reasons().values():
                assert got["kubeskoop.reset.reason"] == "TCP_FLAGS"


def test_ipv6_resets_are_kept(harness: Harness) -> None:
    harness.start(tcpreset.SPEC)
    with netns() as a:
        tcp6_refused(a, 2)
        harness.drain()
        assert by_type(harness, a.inode) == {"nosock": 2, "receive": 2}
        events = harness.events_in(a.inode)
        assert len(events) == 4
        for e in events:
            got = attrs(e)
            assert got["network.type"] == "ipv6"
            assert got["source.address"] == got["destination.address"] == "::1"


def test_events_off_counts_only(harness: Harness) -> None:
    harness.start(tcpreset.SPEC, events=False)
    with netns() as a:
        tcp_refused(a, 2)
        harness.drain()
        assert by_type(harness, a.inode) == {"nosock": 2, "receive": 2}
        assert harness.events == []
        collected = harness.collect("tcpreset")
        assert not [k for k in collected if k[0] == "kubeskoop.agent.events.lost"]


def test_classic_tracepoints_classify_the_same(harness: Harness) -> None:
    probe = harness.start(tcpreset.SPEC, factory=with_kind(tcpreset.SPEC.factory, "tracepoint"))
    assert probe.bpf.chosen == {
        "send": AttachPoint("tracepoint", "tcp/tcp_send_reset"),
        "receive": AttachPoint("tracepoint", "tcp/tcp_receive_reset"),
    }
    with netns() as a:
        tcp_refused(a, 2)
        server = serve(a, "127.0.0.1", 8080, accept=False)
        a.python(RAW_ACK.format(port=8080, count=1))
        server.kill()
        harness.drain()
        assert by_type(harness, a.inode) == {"nosock": 2, "receive": 2, "process": 1}
        reasons = {attrs(e).get("kubeskoop.reset.reason") for e in harness.events_in(a.inode)}
        assert reasons == {"NO_SOCKET", "TCP_FLAGS", None}


def test_stop_is_idempotent_and_detaches(harness: Harness) -> None:
    probe = harness.start(tcpreset.SPEC)
    obj = probe.bpf.obj
    probe.stop()
    probe.stop()
    assert obj.state == "closed" and probe.bpf.chosen == {} and probe.collect() == []
