# SPDX-License-Identifier: Apache-2.0
"""tcpconnect on the real kernel, one fault per throw-away namespace, each made by the test:
a closed port (refused), a peer that aborts an established connection (reset), a peer that
drops SYNs (timed out), a DROP rule on the client's own output (dropped, with the drop reason),
an application closing a connect before an answer (aborted), and a 20 ms hold on the client's
packets (connect latency). Every count is asserted exactly, in the namespace that made it, and
nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from otel_kubeskoop.probes import tcpconnect
from otel_kubeskoop.probes._latency import BOUNDS
from tests.privileged.netnsutil import TestNetns, netns, require_root, tcp_refused, veth_pair
from tests.privileged.probes.conftest import (
    Harness,
    attrs,
    iptables,
    no_ipv6,
    require_iptables,
    serve,
    snmp_tcp,
)
from tests.privileged.probes.delayutil import delayed_output, python_ready
from tests.privileged.probes.latencyutil import KINDS, below, count, with_kind

require_root()
require_iptables()

pytestmark = pytest.mark.privileged

SERVER = "10.231.0.2"
PORT = 5302
ATTEMPTS, FAILURES, DURATION = (i.name for i in tcpconnect.INSTRUMENTS[:3])
ERROR_TYPE = "error.type"

# A connect the kernel gives up on: no socket timeout of its own, so the kernel's error ends it.
CONNECT_FAILS = r"""
import socket
s = socket.socket()
try:
    s.connect(({host!r}, {port}))
except OSError as e:
    print(e.errno)
else:
    raise SystemExit("connected although the test blocks the handshake")
"""

# The peer aborts: the server closes with SO_LINGER 0 (a RST) while the client waits to read.
RESET_BY_PEER = r"""
import socket, struct
srv = socket.create_server(({host!r}, {port}))
print("ready", flush=True)
c, _ = srv.accept()
assert c.recv(10) == b"hi"
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
"""
CLIENT_RESET = r"""
import socket
s = socket.create_connection(({host!r}, {port}))
s.sendall(b"hi")
try:
    assert s.recv(10) == b""
except ConnectionResetError:
    print("reset")
"""

# The application gives up first: a non-blocking connect closed before any answer.
ABORT = r"""
import socket, time
s = socket.socket()
s.setblocking(False)
assert s.connect_ex(({host!r}, {port})) == 115  # EINPROGRESS
time.sleep(0.3)
s.close()
"""


# A server that accepts `n` connections and closes each after the client has (no RST).
ACCEPT_ALL = r"""
import socket
srv = socket.create_server(({host!r}, {port}))
print("ready", flush=True)
for _ in range({n}):
    c, _ = srv.accept()
    c.recv(10)
    c.close()
"""


def rule_packets(ns: TestNetns, chain: str) -> int:
    """Packets the first rule of ``chain`` (filter table) matched."""
    out = ns.run("iptables", "-w", "-L", chain, "-v", "-x", "-n").stdout.splitlines()
    return int(out[2].split()[0])


def counts(h: Harness, ns: TestNetns) -> dict[str, int]:
    """attempts, and failures by error.type, of the namespace."""
    out = {}
    for (name, netns, attributes), value in h.collect("tcpconnect").items():
        if netns != ns.inode or name not in (ATTEMPTS, FAILURES):
            continue
        out[dict(attributes).get(ERROR_TYPE, "attempts")] = value
    return out


def durations(h: Harness, ns: TestNetns) -> Any:
    return h.series("tcpconnect", ns.inode, DURATION).get(())


@contextmanager
def linked(h: Harness) -> Iterator[tuple[TestNetns, TestNetns]]:
    """Two namespaces joined by a veth (client 10.231.0.1, server SERVER), IPv6 off, scanned."""
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            h.rescan()
            yield a, b


def start(h: Harness, kind: str = "tp_btf") -> None:
    h.start(tcpconnect.SPEC, factory=with_kind(tcpconnect.TcpconnectProbe, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_refused_and_connected(harness: Harness, kind: str) -> None:
    start(harness, kind)
    with netns() as a, netns() as b:
        harness.rescan()
        tcp_refused(a, 3)
        server = serve(a, "127.0.0.1", PORT)
        a.python(f"import socket; socket.create_connection(('127.0.0.1', {PORT})).close()")
        server.kill()
        harness.drain()
        assert counts(harness, a) == {"attempts": 4, "refused": 3}
        # Loopback: the SYN-ACK comes back in microseconds.
        assert count(durations(harness, a)) == 1 and below(durations(harness, a), 0.005) == 1
        assert counts(harness, b) == {}
        events = harness.events_in(a.inode)
        assert [e.name for e in events] == ["kubeskoop.tcpconnect.refused"] * 3
        got = attrs(events[0])
        assert got[ERROR_TYPE] == "refused" and got["kubeskoop.tcpconnect.errno"] == "ECONNREFUSED"
        assert got["network.connection.state"] == "syn_sent"
        assert (got["destination.address"], got["destination.port"]) == ("127.0.0.1", 9)
        assert got["kubeskoop.tcpconnect.syn_retransmits"] == 0
        assert "kubeskoop.drop.reason" not in got


def test_reset_mid_connection_counts_where_the_rst_arrived(harness: Harness) -> None:
    start(harness)
    with linked(harness) as (a, b):
        server = python_ready(b, RESET_BY_PEER.format(host=SERVER, port=PORT))
        out = a.python(CLIENT_RESET.format(host=SERVER, port=PORT)).stdout
        assert out.strip() == "reset"
        server.wait(10)
        harness.drain()
        assert counts(harness, a) == {"attempts": 1, "reset": 1}
        assert counts(harness, b) == {}  # its own abort is not a reset received
        (event,) = harness.events_in(a.inode)
        got = attrs(event)
        assert event.name == "kubeskoop.tcpconnect.reset"
        assert got["network.connection.state"] == "established"
        assert got["kubeskoop.tcpconnect.errno"] == "ECONNRESET"
        assert (got["source.address"], got["destination.address"]) == ("10.231.0.1", SERVER)
        assert "kubeskoop.latency" not in got


def test_syns_dropped_by_the_peer_time_out(harness: Harness) -> None:
    start(harness)
    with linked(harness) as (a, b):
        a.run("sysctl", "-qw", "net.ipv4.tcp_syn_retries=1")  # gives up after 1 + 2 s
        serve(b, SERVER, PORT, accept=False)
        iptables(b, "-A", "INPUT", "-p", "tcp", "--syn", "--dport", str(PORT), "-j", "DROP")
        out = a.python(CONNECT_FAILS.format(host=SERVER, port=PORT), timeout=20).stdout
        assert out.strip() == "110"  # ETIMEDOUT
        harness.drain()
        assert counts(harness, a) == {"attempts": 1, "timed_out": 1}
        assert counts(harness, b) == {}
        (event,) = harness.events_in(a.inode)
        got = attrs(event)
        assert event.name == "kubeskoop.tcpconnect.timed_out"
        assert got["kubeskoop.tcpconnect.errno"] == "ETIMEDOUT"
        assert got["kubeskoop.tcpconnect.syn_retransmits"] == snmp_tcp(a, "RetransSegs") >= 1
        assert 2.9 <= got["kubeskoop.latency"] < 4
        assert "kubeskoop.drop.reason" not in got  # dropped over there, not by this node


def test_syns_dropped_on_this_node_carry_the_drop_reason(harness: Harness) -> None:
    start(harness)
    with linked(harness) as (a, b):
        a.run("sysctl", "-qw", "net.ipv4.tcp_syn_retries=1")
        iptables(a, "-A", "OUTPUT", "-p", "tcp", "--syn", "-d", SERVER, "-j", "DROP")
        out = a.python(CONNECT_FAILS.format(host=SERVER, port=PORT), timeout=20).stdout
        assert out.strip() == "110"  # ETIMEDOUT: the kernel retried, as for any lost SYN
        harness.drain()
        assert counts(harness, a) == {"attempts": 1, "dropped": 1}
        assert counts(harness, b) == {}
        (event,) = harness.events_in(a.inode)
        got = attrs(event)
        assert event.name == "kubeskoop.tcpconnect.dropped"
        assert got["kubeskoop.drop.reason"] == "NETFILTER_DROP"
        # Every SYN the rule dropped (the first and the kernel's retries).
        assert got["kubeskoop.tcpconnect.syn_drops"] == rule_packets(a, "OUTPUT") >= 2
        assert got["kubeskoop.tcpconnect.errno"] == "ETIMEDOUT"


def test_a_connect_closed_by_the_application_is_aborted(harness: Harness) -> None:
    start(harness)
    with linked(harness) as (a, b):
        iptables(b, "-A", "INPUT", "-p", "tcp", "--syn", "-j", "DROP")
        a.python(ABORT.format(host=SERVER, port=PORT))
        harness.drain()
        assert counts(harness, a) == {"attempts": 1, "aborted": 1}
        (event,) = harness.events_in(a.inode)
        assert event.name == "kubeskoop.tcpconnect.aborted"
        assert "kubeskoop.tcpconnect.errno" not in attrs(event)


def test_connect_latency_follows_a_20ms_delay(harness: Harness) -> None:
    start(harness)
    with linked(harness) as (a, b):
        server = python_ready(b, ACCEPT_ALL.format(host=SERVER, port=PORT, n=5))
        with delayed_output(a, SERVER, 0.020):
            a.python(f"import socket\nfor _ in range(5): "
                     f"socket.create_connection(({SERVER!r}, {PORT})).close()")
        server.wait(10)
        hist = durations(harness, a)
        assert counts(harness, a) == {"attempts": 5}
    # SYN held 20 ms: each connect in the 16.8-33.6 ms bucket.
    assert count(hist) == 5 and hist.counts[24] == 5, hist.counts
    assert BOUNDS[23] < 0.020 <= BOUNDS[24]
