# SPDX-License-Identifier: Apache-2.0
"""dns on the real kernel: a DNS server in one throw-away namespace (tests/privileged/probes/
dnsutil.py) answering NOERROR, NXDOMAIN, SERVFAIL, REFUSED, NOTIMP, 300 ms late or never, and a
client in another, over UDP and TCP (whose payload the tp_btf programs read from page fragments). Every count is asserted exactly, in the client's namespace,
per server and transport, and nowhere else; the events carry what the kernel saw."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from otel_kubeskoop.probes import dns, tcpconnect
from otel_kubeskoop.probes._latency import BOUNDS
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, attrs, no_ipv6
from tests.privileged.probes.delayutil import python_ready
from tests.privileged.probes.dnsutil import CLIENT, SERVER
from tests.privileged.probes.latencyutil import KINDS, count, with_kind

require_root()

pytestmark = pytest.mark.privileged

SERVER_ADDR = "10.231.0.2"
CLIENT_ADDR = "10.231.0.1"
TIMEOUT_MS = 800
#: the queries of the rcode tests, and what the client must see
QUERIES = ["ok.a.test", "ok.b.test", "nx.a.test", "nx.b.test", "fail.a.test", "refuse.a.test",
           "notimp.a.test", "slow.a.test", "silent.a.test"]
SEEN = {"ok": "0", "nx": "3", "fail": "2", "refuse": "5", "notimp": "4", "slow": "0",
        "silent": "timeout"}
DURATION, SLOW, TIMEOUTS, NAMES, OVERFLOW, UNREADABLE = (i.name for i in dns.INSTRUMENTS)


@contextmanager
def linked(h: Harness) -> Iterator[tuple[TestNetns, TestNetns]]:
    """Client namespace (CLIENT_ADDR) and server namespace (SERVER_ADDR, serving), scanned."""
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            python_ready(b, SERVER.format(host=SERVER_ADDR))
            h.rescan()
            yield a, b


def ask(ns: TestNetns, names: list[str], transport: str, server: str = SERVER_ADDR) -> None:
    out = ns.python(CLIENT.format(queries=[(n, transport) for n in names], server=server,
                                  wait=TIMEOUT_MS / 1000 + 0.2), timeout=60).stdout.split("\n")
    got = [line.split() for line in out if line]
    assert got == [[n, transport, SEEN[n.split(".")[0]]] for n in names], got


def start(h: Harness, kind: str = "tp_btf", **args: Any) -> None:
    h.start(dns.SPEC, dns.DnsArgs.model_validate(
        {"timeoutMs": TIMEOUT_MS, "slowThresholdMs": 200, **args}),
        factory=with_kind(dns.DnsProbe, kind))


def series(h: Harness, ns: TestNetns) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    return {(name, a): v for (name, netns, a), v in h.collect("dns").items() if netns == ns.inode}


def by_error(got: dict[Any, Any], instrument: str, transport: str) -> dict[str | None, Any]:
    out = {}
    for (name, a), value in got.items():
        a = dict(a)
        if name == instrument:
            assert (a["server.address"], a["network.transport"]) == (SERVER_ADDR, transport)
            out[a.get("error.type")] = value
    return out


@pytest.mark.parametrize(("kind", "transport"), [*((k, "udp") for k in KINDS), ("tp_btf", "tcp")])
def test_answers_by_rcode_latency_and_timeouts(harness: Harness, kind: str, transport: str) -> None:
    start(harness, kind)
    with linked(harness) as (a, b):
        ask(a, QUERIES, transport)
        time.sleep(TIMEOUT_MS / 1000 + 0.1)  # the silent query is now overdue
        harness.drain()
        got = series(harness, a)
        assert series(harness, b) == {}  # the server sent answers, not queries
    hists = by_error(got, DURATION, transport)
    assert {e: count(h) for e, h in hists.items()} == {
        None: 3, "nxdomain": 2, "servfail": 1, "refused": 1, "_OTHER": 1}
    # 300 ms: the [2^28, 2^29) ns bucket, 268-537 ms; the other answers well under it.
    assert BOUNDS[27] < 0.3 <= BOUNDS[28]
    assert hists[None].counts[28] == 1 and sum(hists[None].counts[:27]) == 2  # others < 134 ms
    assert by_error(got, SLOW, transport) == {None: 1, "nxdomain": 0, "servfail": 0, "refused": 0,
                                              "_OTHER": 0}
    assert by_error(got, TIMEOUTS, transport) == {None: 1}
    assert not [k for k in got if k[0] in (NAMES, OVERFLOW)]  # names are off

    events = harness.events_in(a.inode)
    assert sorted(e.name for e in events) == [
        "kubeskoop.dns.servfail", "kubeskoop.dns.slow", "kubeskoop.dns.timeout"]
    for e in events:
        got = attrs(e)
        assert (got["source.address"], got["destination.address"]) == (CLIENT_ADDR, SERVER_ADDR)
        assert got["server.address"] == SERVER_ADDR and got["destination.port"] == 53
        assert got["network.transport"] == transport
        assert "dns.question.name" not in got
        position = {"kubeskoop.dns.servfail": 4, "kubeskoop.dns.slow": 7,
                    "kubeskoop.dns.timeout": 8}[e.name]
        assert got["kubeskoop.dns.id"] == 0x1000 + position
    servfail, slow, timeout = (attrs(e) for e in sorted(events, key=lambda e: e.name))
    assert servfail["error.type"] == "servfail" and servfail["kubeskoop.latency"] < 0.2
    assert "error.type" not in slow and 0.3 <= slow["kubeskoop.latency"] < 0.5
    assert timeout["error.type"] == "timeout" and timeout["kubeskoop.latency"] >= TIMEOUT_MS / 1000


def test_query_names_only_with_the_option_and_capped(harness: Harness) -> None:
    start(harness, queryNames=True, maxQueryNames=2)
    with linked(harness) as (a, _):
        ask(a, ["ok.a.test", "ok.a.test", "nx.b.test"], "udp")
        ask(a, ["fail.c.test", "silent.d.test"], "tcp")  # names from page fragments
        time.sleep(TIMEOUT_MS / 1000 + 0.1)
        harness.drain()
        got = series(harness, a)
        overflow = harness.collect("dns")[(OVERFLOW, None, ())]
    names = {(dict(k[1])["dns.question.name"], dict(k[1]).get("error.type")): v
             for k, v in got.items() if k[0] == NAMES}
    # The first two names stay reported (ok.a.test and nx.b.test, in key order, whichever came
    # first); the other two names' answer and timeout are the overflow.
    assert sum(names.values()) + overflow == 5
    assert len({n for n, _ in names}) == 2 and overflow == 5 - sum(names.values())
    expected = {("ok.a.test", None): 2, ("nx.b.test", "nxdomain"): 1,
                ("fail.c.test", "servfail"): 1, ("silent.d.test", "timeout"): 1}
    assert all(expected[k] == v for k, v in names.items()), names
    events = {e.name: attrs(e) for e in harness.events_in(a.inode)}
    assert events["kubeskoop.dns.servfail"]["dns.question.name"] == "fail.c.test"
    assert events["kubeskoop.dns.timeout"]["dns.question.name"] == "silent.d.test"


def test_tcp_messages_in_page_fragments_are_counted_unreadable_by_classic_tracepoints(
        harness: Harness) -> None:
    """TCP puts a segment's payload in page fragments, which only the tp_btf programs read (a
    dynptr over the skb): with the classic tracepoints neither the query nor the answer is
    followed, and each such segment is counted."""
    start(harness, "tracepoint")
    with linked(harness) as (a, _):
        before = harness.collect("dns")[(UNREADABLE, None, ())]
        ask(a, ["ok.a.test", "nx.a.test", "silent.a.test"], "tcp")
        time.sleep(TIMEOUT_MS / 1000 + 0.1)
        got = series(harness, a)
        after = harness.collect("dns")[(UNREADABLE, None, ())]
    assert after - before == 5  # two queries and their answers, and the silent one's query
    assert not [k for k in got if k[0] in (DURATION, TIMEOUTS)]


def test_off_bit_stops_counting_while_the_object_stays(harness: Harness) -> None:
    harness.start(tcpconnect.SPEC)  # keeps the shared object loaded
    objects = harness.contexts["tcpconnect"].objects

    def sharing(args: Any, ctx: Any) -> dns.DnsProbe:
        ctx.objects = objects  # as the runtime does: one shared object for its probes
        return dns.DnsProbe(args, ctx)

    args = dns.DnsArgs.model_validate({"timeoutMs": TIMEOUT_MS})
    harness.start(dns.SPEC, args, factory=sharing)
    with linked(harness) as (a, _):
        ask(a, ["ok.a.test"], "udp")
        assert count(by_error(series(harness, a), DURATION, "udp")[None]) == 1
        harness.stop("dns")
        ask(a, ["ok.a.test", "nx.a.test"], "udp")
        harness.start(dns.SPEC, args, factory=sharing)
        ask(a, ["fail.a.test"], "udp")
        hists = by_error(series(harness, a), DURATION, "udp")
    # The histogram of before is kept (the maps stay); nothing counted while the bit was off.
    assert {e: count(h) for e, h in hists.items()} == {None: 1, "servfail": 1}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ipv6(harness: Harness, transport: str) -> None:
    start(harness)
    with netns() as a, netns() as b:
        with veth_pair(a, b, "fd00:dd::1/64", "fd00:dd::2/64") as (dev_a, dev_b):
            deadline = time.monotonic() + 10  # duplicate address detection: about 2 s
            for ns, dev in ((a, dev_a), (b, dev_b)):
                while ns.run("ip", "-6", "addr", "show", "dev", dev, "tentative").stdout.strip():
                    assert time.monotonic() < deadline, f"{dev}: IPv6 address still tentative"
                    time.sleep(0.1)
            python_ready(b, SERVER.format(host="fd00:dd::2"))
            harness.rescan()
            ask(a, ["ok.a.test", "nx.a.test"], transport, "fd00:dd::2")
            got = series(harness, a)
    hists = {dict(attrs).get("error.type"): h for (name, attrs), h in got.items() if name == DURATION}
    assert {e: count(h) for e, h in hists.items()} == {None: 1, "nxdomain": 1}
    assert {dict(attrs)["server.address"] for (name, attrs) in got if name == DURATION} == {"fd00:dd::2"}
