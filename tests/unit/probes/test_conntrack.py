# SPDX-License-Identifier: Apache-2.0
"""conntrack over recorded ctnetlink answers and events (a fake kernel per namespace; no root).

Event sockets are datagram socketpairs standing in for the ctnetlink multicast sockets, so the
probe's own epoll set and its ``consume`` run for real."""

from __future__ import annotations

import select
import socket
import struct
from pathlib import Path

import pytest
from pyroute2.netlink import NETLINK_NETFILTER
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_GET_STATS,
    IPCTNL_MSG_CT_GET_STATS_CPU,
)

from otel_kubeskoop.config import parse
from otel_kubeskoop.netlink.core import attrs, iter_messages
from otel_kubeskoop.netlink.sockets import NetnsSockets
from otel_kubeskoop.probe import Cycle, Event, ProbeContext
from otel_kubeskoop.probes import conntrack
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.fakes import FakeNs, RecordedSocket, opener

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"
CT = 1 << 8
LOST = "kubeskoop.agent.events.lost"


def stats_answers() -> dict:
    cpu, _ = read_dump(DUMPS / "ctnetlink_stats_cpu.dump")
    glob, _ = read_dump(DUMPS / "ctnetlink_stats.dump")
    return {(CT | IPCTNL_MSG_CT_GET_STATS_CPU, 0): cpu, (CT | IPCTNL_MSG_CT_GET_STATS, 0): glob}


class EventSocket:
    """The probe's side of a datagram socketpair; ``push`` is the kernel sending an event."""

    def __init__(self) -> None:
        self.near, self.far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.drops = 0
        self.groups: int | None = None
        self.options: dict[tuple[int, int], int] = {}

    def fileno(self) -> int:
        return self.near.fileno()

    def settimeout(self, value) -> None:
        self.near.settimeout(value)

    def setblocking(self, flag: bool) -> None:
        self.near.setblocking(flag)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options[(level, option)] = value

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        assert (level, option, size) == (socket.SOL_SOCKET, conntrack.SO_MEMINFO, 36)
        return struct.pack("=9I", 0, 0, 0, 0, 0, 0, 0, 0, self.drops)

    def bind(self, address) -> None:
        self.groups = address[1]

    def recv_into(self, buf, nbytes: int, flags: int = 0) -> int:
        return self.near.recv_into(buf, nbytes, flags)

    def push(self, datagram: bytes) -> None:
        self.far.send(datagram)

    def close(self) -> None:
        self.near.close()
        self.far.close()


class Run:
    def __init__(self, namespaces: dict, args: conntrack.ConntrackArgs | None = None, events: bool = True,
                 answers=lambda inode: stats_answers()) -> None:
        self.events: list[Event] = []
        self.watched: list[tuple[int, object]] = []
        self.ctx = ProbeContext("conntrack", cycle=Cycle(namespaces=namespaces), events_enabled=events,
                                emit=self.events.append, watch=lambda fd, c: self.watched.append((fd, c)))
        self.probe = conntrack.ConntrackProbe(args or conntrack.ConntrackArgs(), self.ctx)
        self.sockets: list[tuple[int, RecordedSocket]] = []  # every stats socket opened, in order

        def recorded(inode: int) -> RecordedSocket:
            self.sockets.append((inode, RecordedSocket(answers(inode))))
            return self.sockets[-1][1]

        self.probe.stats = NetnsSockets(NETLINK_NETFILTER, opener=opener(recorded))
        self.event_socks: dict[int, EventSocket] = {}
        if events:  # what start() does, with the fake opener
            self.probe._epoll = select.epoll()
            self.probe._events = NetnsSockets(
                NETLINK_NETFILTER, setup=self.probe._setup_events, on_close=self.probe._closed,
                opener=opener(lambda inode: self.event_socks.setdefault(inode, EventSocket())))
            with self.probe._lock:
                self.probe._sync_events()

    def collect(self) -> dict:
        out = {}
        for s in self.probe.collect():
            key = (s.instrument.name, s.netns, s.attributes)
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
        return out

    def lost(self, reason: str) -> dict[int | None, int]:
        """{namespace: events lost for ``reason``}."""
        attrs = (("kubeskoop.probe", "conntrack"), ("kubeskoop.loss.reason", reason))
        return {ns: v for (name, ns, a), v in self.collect().items() if name == LOST and a == attrs}

    def consume(self) -> None:
        ready = select.select([self.probe._epoll.fileno()], [], [], 0)[0]
        assert ready, "the probe's epoll set should be readable"
        self.probe._consume()


@pytest.fixture
def recorded_events() -> list[bytes]:
    raw, _ = read_dump(DUMPS / "ctnetlink_events.dump")
    return [raw[m.start - 16:m.end] for m in iter_messages(raw)]


def test_counters_per_namespace_and_the_limit_once_on_the_node():
    _, cpu = read_dump(DUMPS / "ctnetlink_stats_cpu.dump")
    _, glob = read_dump(DUMPS / "ctnetlink_stats.dump")
    run = Run({1: FakeNs(1, is_host=True), 7: FakeNs(7)}, events=False)
    got = run.collect()
    for ns in (1, 7):
        assert got[("kubeskoop.conntrack.invalid", ns, ())] == cpu["invalid"] == 6
        assert got[("kubeskoop.conntrack.insertfailed", ns, ())] == cpu["insert_failed"]
        assert got[("kubeskoop.conntrack.entries", ns, ())] == glob["entries"]
    assert got[("kubeskoop.conntrack.maxentries", None, ())] == glob["max_entries"]
    assert not [k for k in got if k[0] == "kubeskoop.conntrack.maxentries" and k[1] is not None]
    assert not [k for k in got if k[0] == LOST]  # no event sockets, no event losses
    assert run.ctx.errors == []
    run.probe.stop()


def test_events_are_limited_per_namespace_and_type_and_every_loss_is_counted(recorded_events):
    run = Run({7: FakeNs(7), 8: FakeNs(8)}, conntrack.ConntrackArgs(eventRate=1, eventBurst=4))
    sock = run.event_socks[7]
    assert sock.groups == 0b111 and sock.options[(conntrack.SOL_NETLINK, conntrack.NETLINK_NO_ENOBUFS)] == 1
    assert len(run.watched) == 0  # start() hands the epoll fd to the pump; this harness did not
    for datagram in recorded_events:  # 2 new, 6 updates, 2 destroys
        sock.push(datagram)
    sock.push(b"\x01\x02\x03")  # not netlink
    sock.drops = 5  # the kernel dropped five more for lack of buffer space
    run.consume()
    kinds = [e.name for e in run.events]
    assert kinds.count("kubeskoop.conntrack.new") == 2
    assert kinds.count("kubeskoop.conntrack.update") == 4  # burst of 4, refilled at 1/s
    assert kinds.count("kubeskoop.conntrack.destroy") == 2
    assert run.lost("rate_limited") == {7: 2, 8: 0} and run.lost("socket_buffer_full") == {7: 5, 8: 0}
    assert run.ctx.decode_errors == 1
    assert len(run.events) + 2 + 5 + 1 == len(recorded_events) + 1 + 5  # delivered + lost = sent
    first = run.events[0]
    assert first.netns == 7 and first.upstream_type == "ConntrackNew" and first.timestamp_ns > 0
    attrs = dict(first.attributes)
    assert attrs["network.type"] == "ipv4" and attrs["network.transport"] == "tcp"
    assert attrs["destination.port"] == 7100 and attrs["destination.address"] == "127.0.0.1"
    assert attrs["kubeskoop.conntrack.state"] == "syn_sent" and attrs["kubeskoop.conntrack.replied"] is False
    assert first.body.startswith("Proto = TCP Replied = false State = SYN_SENT Src = 127.0.0.1:")
    udp = [e for e in run.events if dict(e.attributes)["network.transport"] == "udp"]
    assert dict(udp[0].attributes)["source.address"] == "::1" and "kubeskoop.conntrack.state" not in dict(udp[0].attributes)
    # Another namespace has its own buckets.
    run.event_socks[8].push(recorded_events[1])
    run.consume()
    assert run.events[-1].netns == 8 and run.events[-1].name == "kubeskoop.conntrack.update"
    run.probe.stop()


def test_a_vanished_namespace_releases_its_socket_and_counters(recorded_events):
    run = Run({7: FakeNs(7), 8: FakeNs(8)}, conntrack.ConntrackArgs(eventRate=1, eventBurst=1))
    run.event_socks[7].drops = 3
    run.event_socks[8].drops = 1
    for datagram in recorded_events[1:4]:  # three updates: one passes, two over the limit
        run.event_socks[7].push(datagram)
    run.consume()
    assert run.lost("socket_buffer_full") == {7: 3, 8: 1} and run.lost("rate_limited") == {7: 2, 8: 0}
    gone = run.event_socks[7]
    run.ctx.cycle.namespaces = {8: FakeNs(8)}
    assert run.lost("socket_buffer_full") == {8: 1} and run.lost("rate_limited") == {8: 0}
    assert gone.near.fileno() == -1 and 7 not in run.probe._events
    assert not [k for k in run.probe.buckets.keys() if k[0] == 7] and 7 not in run.probe.rate_limited
    assert list(run.probe._fd_inode.values()) == [8]
    run.probe.stop()
    run.probe.stop()  # idempotent


def test_event_types_narrow_the_subscription(recorded_events):
    run = Run({7: FakeNs(7)}, conntrack.ConntrackArgs(eventTypes=["destroy"]))
    assert run.event_socks[7].groups == 0b100  # NFNLGRP_CONNTRACK_DESTROY only
    for datagram in recorded_events:
        run.event_socks[7].push(datagram)
    run.consume()
    assert [e.name for e in run.events] == ["kubeskoop.conntrack.destroy"] * 2
    assert run.lost("rate_limited") == {7: 0}
    run.probe.stop()


def test_token_bucket():
    run = Run({}, conntrack.ConntrackArgs(eventRate=10, eventBurst=2), events=False)
    allow = run.probe.buckets.allow
    assert [allow(1, "new", 100.0) for _ in range(3)] == [True, True, False]
    assert allow(1, "update", 100.0)  # its own bucket
    assert not allow(1, "new", 100.05) and allow(1, "new", 100.2)  # refills at 10/s
    unlimited = Run({}, conntrack.ConntrackArgs(eventRate=0), events=False).probe
    assert all(unlimited.buckets.allow(1, "new", 0.0) for _ in range(1000))


def test_args_from_an_upstream_style_config():
    config = parse({"metrics": {"probes": [{"name": "conntrack"}]},
                    "event": {"probes": [{"name": "conntrack", "args": {"eventrate": 50, "EventBurst": 7,
                                                                        "eventTypes": ["new", "destroy"]}}]}},
                   "test", environ={})
    (args,) = {pc.args for pc in config.probes if pc.kind.value == "events"}
    assert (args.event_rate, args.event_burst, args.event_types) == (50, 7, ("new", "destroy"))


# Tables (dumpTables) -------------------------------------------------------------------------------

HOST, ROUTER, POD, DEST_NS = 1, 7, 8, 9
TCP, UDP = "tcp", "udp"


class AddrNs(FakeNs):
    """A namespace handle whose /proc/<pid>/net/fib_trie lists ``addresses`` as local."""

    def __init__(self, inode: int, addresses: tuple[str, ...], is_host: bool = False) -> None:
        super().__init__(inode, is_host)
        self.addresses = addresses

    def read(self, relpath: str) -> bytes:
        if relpath != "net/fib_trie":
            raise FileNotFoundError(relpath)
        leaves = "".join(f"     |-- {a}\n        /32 host LOCAL\n" for a in self.addresses)
        return f"Local:\n  +-- 0.0.0.0/0 3 0 5\n{leaves}".encode()

    def path(self, relpath: str) -> str:
        return f"/fake/{self.inode}/{relpath}"


def with_entries(n: int) -> bytes:
    """The recorded IPCTNL_MSG_CT_GET_STATS answer, its entry count set to ``n``."""
    glob = bytearray(read_dump(DUMPS / "ctnetlink_stats.dump")[0])
    (m, *_rest) = [m for m in iter_messages(bytes(glob)) if m.type == CT | IPCTNL_MSG_CT_GET_STATS]
    start, _end = attrs(bytes(glob), m.start + 4, m.end)[1]  # CTA_STATS_GLOBAL_ENTRIES
    struct.pack_into(">I", glob, start, n)
    return bytes(glob)


def table_run(**args) -> Run:
    """The router of ctnetlink_table.dump with its 11 entries; the host, the pod and the
    destination track nothing."""
    table, _ = read_dump(DUMPS / "ctnetlink_table.dump")
    cpu, _ = read_dump(DUMPS / "ctnetlink_stats_cpu.dump")

    def answers(inode: int) -> dict:
        out = {(CT | IPCTNL_MSG_CT_GET_STATS_CPU, 0): cpu,
               (CT | IPCTNL_MSG_CT_GET_STATS, 0): with_entries(11 if inode == ROUTER else 0)}
        if inode == ROUTER:
            out[(CT | IPCTNL_MSG_CT_GET, 0)] = table
        return out

    namespaces = {HOST: AddrNs(HOST, ("192.0.2.10",), is_host=True),
                  ROUTER: AddrNs(ROUTER, ("10.234.1.1", "10.234.2.1")),
                  POD: AddrNs(POD, ("10.234.1.2",)), DEST_NS: AddrNs(DEST_NS, ("10.234.2.2",))}
    return Run(namespaces, conntrack.ConntrackArgs(dumpTables=True, **args), events=False, answers=answers)


def series(got: dict, name: str) -> dict:
    return {(ns, a): v for (n, ns, a), v in got.items() if n == name}


def test_entries_count_for_the_namespace_holding_the_source_address():
    run = table_run()
    got = run.collect()
    assert series(got, "kubeskoop.conntrack.source.entries") == {
        (POD, (("network.transport", TCP), ("kubeskoop.conntrack.state", "established"))): 3,
        (POD, (("network.transport", UDP),)): 4,
        (POD, (("network.transport", "icmp"),)): 1,
        (ROUTER, (("network.transport", TCP), ("kubeskoop.conntrack.state", "established"))): 2,
        (ROUTER, (("network.transport", UDP),)): 1,  # ::1: no namespace holds it; the table's own
    }
    assert series(got, "kubeskoop.conntrack.dump.skipped") == {(ROUTER, ()): 0}
    assert run.ctx.errors == []
    # Only the router's table was dumped; the others were asked for their counters only.
    dumped = {inode for inode, sock in run.sockets if any(r[4:6] == struct.pack("=H", CT | 1) for r in sock.requests)}
    assert dumped == {ROUTER}


def test_snat_ports_of_the_translating_namespace():
    got = table_run().collect()
    tcp = (("network.transport", TCP), ("source.address", "10.234.2.1"), ("destination.address", "10.234.2.2"),
           ("destination.port", 8080))
    udp = (("network.transport", UDP), ("source.address", "10.234.2.1"), ("destination.address", "10.234.2.2"),
           ("destination.port", 53))
    # 3 masqueraded pod connections + the router's own 2 hold ports of 10.234.2.1 towards :8080
    assert series(got, "kubeskoop.conntrack.snat.ports") == {(ROUTER, tcp): 5, (ROUTER, udp): 4}
    assert series(got, "kubeskoop.conntrack.snat.utilization") == {(ROUTER, tcp): 5 / 64512, (ROUTER, udp): 4 / 64512}
    assert series(got, "kubeskoop.conntrack.snat.omitted") == {(ROUTER, ()): 0}
    narrow = table_run(snatPortRange="1024-1123", maxSnatSeries=1).collect()  # no port inside
    assert series(narrow, "kubeskoop.conntrack.snat.ports") == {}
    one = table_run(maxSnatSeries=1).collect()
    assert series(one, "kubeskoop.conntrack.snat.ports") == {(ROUTER, tcp): 5}  # the busiest kept
    assert series(one, "kubeskoop.conntrack.snat.omitted") == {(ROUTER, ()): 1}


def test_the_entry_cap_cuts_the_dump_and_counts_what_it_left():
    run = table_run(maxEntries=4)  # the recorded socket sends one entry per datagram
    got = run.collect()
    read = sum(series(got, "kubeskoop.conntrack.source.entries").values())
    assert read == 4 and series(got, "kubeskoop.conntrack.dump.skipped") == {(ROUTER, ()): 11 - 4}
    # The cut dump's socket was closed; the next collection opens another.
    router = [sock for inode, sock in run.sockets if inode == ROUTER]
    assert len(router) == 1 and router[0].closed
    run.collect()
    assert len([1 for inode, _ in run.sockets if inode == ROUTER]) == 2


def test_a_failed_dump_is_reported_and_its_entries_counted_as_skipped():
    run = table_run()
    run.probe.stats.sync(run.ctx.cycle.namespaces)
    router = next(sock for inode, sock in run.sockets if inode == ROUTER)
    del router.answers[(CT | IPCTNL_MSG_CT_GET, 0)]
    got = run.collect()
    assert series(got, "kubeskoop.conntrack.dump.skipped") == {(ROUTER, ()): 11}
    assert series(got, "kubeskoop.conntrack.source.entries") == {}
    assert [e.errno for e in run.ctx.errors] == [95] and router.closed


def test_without_dump_tables_nothing_more_is_asked():
    run = Run({1: FakeNs(1, is_host=True)}, events=False)
    got = run.collect()
    assert {name for name, _, _ in got} == {s.name for s in conntrack.COUNTERS}
    ((_inode, sock),) = run.sockets
    assert len(sock.requests) == 2  # the two counter requests of every collection
    assert run.probe.tables is None


def test_table_args():
    args = conntrack.ConntrackArgs(dumpTables=True)
    assert (args.max_entries, args.snat_port_range, args.max_snat_series) == (100_000, "1024-65535", 100)
    with pytest.raises(ValueError, match="not a port range"):
        conntrack.ConntrackArgs(snatPortRange="many")
    with pytest.raises(ValueError, match="first <= last"):
        conntrack.ConntrackArgs(snatPortRange="2000-1024")
    assert conntrack.table.port_range("1024-65535") == (1024, 65535)
