# SPDX-License-Identifier: Apache-2.0
"""socketlatency on the real kernel: waits of a size the test controls, inside throw-away
namespaces. A reader that sleeps 200 ms before recv() leaves data 200 ms in its receive queue; a
writer that corks its socket (TCP_CORK) for 150 ms keeps its data 150 ms in the write queue. Each
must land in the histogram bucket holding that wait, in the right namespace and direction, in
upstream's counters, and as one event with the connection and the process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from otel_kubeskoop.bpf.attach import AttachKind, AttachPoint
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.probes import socketlatency
from otel_kubeskoop.probes._latency import BOUNDS
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, no_ipv6
from tests.privileged.probes.latencyutil import at_least, count, minus, value

require_root()

pytestmark = pytest.mark.privileged

DURATION = "kubeskoop.socketlatency.duration"
DIRECTION = "network.io.direction"
COUNTERS = ("read1ms", "read100ms", "write1ms", "write100ms")


class Classic:
    """The running kernel's features with BTF tracepoints refused where a classic tracepoint can
    stand in (tcp_sendmsg_locked has none with the socket in its record)."""

    def __init__(self) -> None:
        self.base = KernelFeatures()

    def unavailable(self, point: AttachPoint) -> str | None:
        if point.kind is AttachKind.TP_BTF and point.target != "tcp_sendmsg_locked":
            return "tp_btf refused (test)"
        if point.kind in (AttachKind.FENTRY, AttachKind.KPROBE):
            return f"{point.kind} refused (test)"
        return self.base.unavailable(point)


def classic_probe(args: Any, ctx: Any) -> socketlatency.SocketlatencyProbe:
    probe = socketlatency.SocketlatencyProbe(args, ctx)
    probe.bpf.features = Classic()
    return probe


FACTORIES = {"tp_btf": socketlatency.SocketlatencyProbe, "tracepoint": classic_probe}

# A connection over loopback inside the namespace. The server's peer writes 100 bytes, the
# server sleeps before reading them; then the client corks its socket, writes, waits, uncorks.
CONVERSATION = r"""
import os, socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port))
s, _ = srv.accept()
print(os.getpid(), port, c.getsockname()[1], flush=True)
c.sendall(b"x" * 100)
time.sleep({read_wait})
assert len(s.recv(1000)) == 100
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
c.send(b"y" * 10)
time.sleep({write_wait})
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
assert len(s.recv(1000)) == 10
"""


def converse(ns: TestNetns, read_wait: float, write_wait: float) -> tuple[int, int, int]:
    """Play CONVERSATION in ``ns``: (pid, server port, client port)."""
    out = ns.python(CONVERSATION.format(read_wait=read_wait, write_wait=write_wait)).stdout
    pid, server, client = (int(x) for x in out.split())
    return pid, server, client


def bucket_of(seconds: float) -> int:
    """The histogram bucket holding an interval of ``seconds``."""
    return next((i for i, bound in enumerate(BOUNDS) if seconds <= bound), len(BOUNDS))


def sections(probe: Any) -> dict[str, str]:
    """hook -> the section of the attach point in use."""
    return {hook: str(point) for hook, point in probe.bpf.chosen.items()}


def histograms(h: Harness, netns: int) -> dict[str, Any]:
    series = h.series("socketlatency", netns, DURATION)
    return {d: value(series, {DIRECTION: d}) for d in ("receive", "transmit")}


def counters(h: Harness, netns: int) -> dict[str, int]:
    found = {}
    for word in COUNTERS:
        got = h.series("socketlatency", netns, f"kubeskoop.socketlatency.{word}")
        found[word] = got.get((), 0)
    return found


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(socketlatency.SPEC)
    assert sections(probe) == {
        "ready": "tp_btf/sk_data_ready",
        "recv": "tp_btf/sock_recv_length",
        "sendmsg": "tp_btf/tcp_sendmsg_locked",
        "queue": "tp_btf/net_dev_queue",
        "state": "tp_btf/inet_sock_set_state",
    }
    assert probe.bpf.obj.rejected == {}
    assert set(probe.bpf_costs()) == {f"socketlatency_{hook}_btf" for hook in probe.bpf.chosen}


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_a_reader_200ms_late_and_a_write_corked_150ms(harness: Harness, kind: str) -> None:
    probe = harness.start(socketlatency.SPEC, factory=FACTORIES[kind])
    if kind == "tracepoint":
        assert sections(probe)["recv"] == "tracepoint/sock/sock_recv_length"
        assert sections(probe)["ready"] == "tracepoint/sock/sk_data_ready"
    with netns() as a, netns() as b:
        harness.rescan()
        pid, server, client = converse(a, read_wait=0.2, write_wait=0.15)
        harness.drain()

        hist = histograms(harness, a.inode)
        receive, transmit = hist["receive"], hist["transmit"]
        # receive: the 200 ms wait, and the corked 10 bytes, read at once after the uncork.
        assert receive.counts[bucket_of(0.2)] == 1, receive.counts
        assert at_least(receive, 0.1) == 1
        assert 0.2 <= receive.sum < 0.6
        # transmit: the corked write (150 ms) and the first, sent at once.
        assert transmit.counts[bucket_of(0.15)] == 1, transmit.counts
        assert at_least(transmit, 0.1) == 1
        assert count(transmit) >= 2
        assert counters(harness, a.inode) == {"read1ms": 1, "read100ms": 1, "write1ms": 1,
                                              "write100ms": 1}
        assert harness.series("socketlatency", b.inode) == {}

        (read,) = harness.events_in(a.inode, "kubeskoop.socketlatency.readslow")
        got = attrs(read)
        assert read.upstream_type == "SOCKETLAT_READSLOW"
        assert 0.2 <= got["kubeskoop.latency"] < 0.5
        # The reading socket's view: source = its own end (the server's port).
        assert (got["source.address"], got["source.port"]) == ("127.0.0.1", server)
        assert (got["destination.address"], got["destination.port"]) == ("127.0.0.1", client)
        assert (got["network.type"], got["network.transport"]) == ("ipv4", "tcp")
        assert got["network.connection.state"] == "established"
        assert got["network.io.direction"] == "receive"
        assert got["process.pid"] == pid and got["process.command"].startswith("python")
        assert (got["kubeskoop.latency.start"], got["kubeskoop.latency.end"]) == (
            sections(probe)["ready"], sections(probe)["recv"])
        assert abs(read.timestamp_ns - time.time_ns()) < 30e9

        (send,) = harness.events_in(a.inode, "kubeskoop.socketlatency.sendslow")
        got = attrs(send)
        assert send.upstream_type == "SOCKETLAT_SENDSLOW"
        assert 0.15 <= got["kubeskoop.latency"] < 0.45
        assert (got["source.port"], got["destination.port"]) == (client, server)
        assert got["process.pid"] == pid and got["network.io.direction"] == "transmit"
        assert (got["kubeskoop.latency.start"], got["kubeskoop.latency.end"]) == (
            sections(probe)["sendmsg"], sections(probe)["queue"])
        assert len(harness.events_in(a.inode)) == 2  # nothing else crossed the 100 ms threshold


def test_over_a_veth_each_end_counts_in_its_own_namespace(harness: Harness) -> None:
    harness.start(socketlatency.SPEC)
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):  # a: 10.231.0.1, b: 10.231.0.2
            harness.rescan()
            server = b.popen(sys.executable, "-c",
                             "import socket, time\n"
                             "s = socket.create_server(('10.231.0.2', 8080))\n"
                             "print('ready', flush=True)\n"
                             "c, _ = s.accept()\n"
                             "time.sleep(0.15)\n"
                             "print(len(c.recv(100)), flush=True)\n",
                             stdout=subprocess.PIPE)
            assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
            a.python("import socket, time\n"
                     "c = socket.create_connection(('10.231.0.2', 8080))\n"
                     "c.sendall(b'z' * 50)\n"
                     "time.sleep(0.3)\n")
            assert server.stdout.readline().strip() == b"50"
            harness.drain()
            # b read late; a wrote and its data left at once.
            assert at_least(histograms(harness, b.inode)["receive"], 0.1) == 1
            assert counters(harness, b.inode)["read100ms"] == 1
            assert counters(harness, a.inode)["read1ms"] == 0
            assert counters(harness, a.inode)["write1ms"] == 0
            assert count(histograms(harness, a.inode)["transmit"]) >= 1
            assert len(harness.events_in(b.inode, "kubeskoop.socketlatency.readslow")) == 1
            assert harness.events_in(a.inode) == []


def test_a_socket_closed_with_unread_data_leaves_nothing_in_flight(harness: Harness) -> None:
    probe = harness.start(socketlatency.SPEC)
    with netns() as a:
        harness.rescan()
        before = probe.hists.inflight()
        a.python("import socket, time\n"
                 "srv = socket.create_server(('127.0.0.1', 0))\n"
                 "c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()\n"
                 "for _ in range(20):\n"
                 "    c.sendall(b'q' * 10); time.sleep(0.001)\n"
                 "s.close(); c.close()\n")
        time.sleep(0.1)
        after = probe.hists.inflight()
        # The server never read: its wait started and was discarded when it reached TCP_CLOSE
        # (unread data at close makes it send a RST and close at once).
        assert after["started"] - before["started"] >= 1
        assert after["discarded"] - before["discarded"] >= 1
        assert count(histograms(harness, a.inode)["receive"]) == 0  # nothing was ever read
    series = dict(harness.collect("socketlatency"))
    evicted = next(v for (inst, _, attrs_), v in series.items()
                   if inst == "kubeskoop.agent.bpf.inflight.evicted")
    stats = probe.hists.inflight()
    # the sample is the kernel's count, and every eviction was a start's (counted as one too)
    assert evicted == stats["evicted"] <= stats["started"]


def test_event_threshold_and_rate_limit(harness: Harness) -> None:
    # A 20 ms threshold: each of 30 reads 25 ms late would be an event, but the namespace's
    # bucket lets 2 through, then refills at 1 a second: the rest are counted as rate-limited.
    args = socketlatency.SPEC.args(thresholdMs=20, eventRate=1, eventBurst=2)
    probe = harness.start(socketlatency.SPEC, args)
    with netns() as a:
        harness.rescan()
        lost_before = probe.bpf.losses()["rate_limited"]
        a.python("import socket, time\n"
                 "srv = socket.create_server(('127.0.0.1', 0))\n"
                 "c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()\n"
                 "for _ in range(30):\n"
                 "    c.sendall(b'r'); time.sleep(0.025); s.recv(10)\n")
        harness.drain()
        events = harness.events_in(a.inode, "kubeskoop.socketlatency.readslow")
        hist = histograms(harness, a.inode)["receive"]
        slow = at_least(hist, 2 ** 24 * 1e-9)  # buckets from 16.8 ms: the 25 ms waits
        assert slow >= 30
        assert 2 <= len(events) <= 3  # burst 2, and at most one token refilled in ~0.8 s
        assert all(attrs(e)["kubeskoop.latency"] > 0.02 for e in events)
        lost = probe.bpf.losses()["rate_limited"] - lost_before
        assert lost >= 30 - len(events)
        series = harness.collect("socketlatency")
        assert series[("kubeskoop.agent.events.lost", None,
                       (("kubeskoop.probe", "socketlatency"),
                        ("kubeskoop.loss.reason", "rate_limited")))] >= lost


def test_stop_is_idempotent_and_detaches(harness: Harness) -> None:
    probe = harness.start(socketlatency.SPEC)
    obj = probe.bpf.obj
    probe.stop()
    probe.stop()
    assert obj.state == "closed" and probe.collect() == []
    assert os.path.exists("/sys/kernel/btf/vmlinux")
