# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop watch`` against a running agent process on real kernel events.

Pod shop/web-1 (namespace A) sends 4 UDP datagrams from port 42001 to a port an iptables DROP
rule guards (NETFILTER_DROP) and makes 2 refused connects from ports 43001-43002 to the closed
port 7012 (NO_SOCKET drops, TCPRESET_NOSOCK and TCPRESET_RECEIVE); the plain namespace B makes 3
refused connects from ports 41001-41003 to 7011. Three watchers run with different filters, each
must show exactly its selection, within seconds, and the JSON objects must carry the OTLP log
records' attributes and resources.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.privileged.liveagent import POD_NAME, POD_NAMESPACE, Lines, LiveAgent, live_agent
from tests.privileged.netnsutil import TestNetns, require_root
from tests.privileged.probes.conftest import iptables, require_iptables

require_root()
pytestmark = pytest.mark.privileged

LIVE = 5.0  # seconds from the kernel event to the line on the watcher's stdout, at most

REFUSED = """
import socket
for port in {ports}:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", {to}))
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("connected to a closed port")
    finally:
        s.close()
"""

DROPPED = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 42001))
for _ in range(4):
    s.sendto(b"x", ("127.0.0.1", 5000))
"""


def refused(ns: TestNetns, ports: list[int], to: int) -> None:
    ns.python(REFUSED.format(ports=ports, to=to))


def tuple_of(attrs: dict) -> tuple:
    return (attrs["network.transport"], attrs["source.address"], attrs["source.port"],
            attrs["destination.address"], attrs["destination.port"])


def same_as_otlp(live: LiveAgent, record: dict) -> None:
    """The OTLP log record of the same event (name and time) has the JSON object's attributes,
    resource and body."""
    live.rx.wait_for(lambda: [r for r in live.rx.log_records(record["event_name"])
                              if r.time_unix_nano == record["timestamp"]], timeout=15,
                     description=f"the OTLP record of {record}")
    (otlp,) = [r for r in live.rx.log_records(record["event_name"]) if r.time_unix_nano == record["timestamp"]]
    assert record["attributes"] == otlp.attributes
    assert record["resource"] == otlp.resource
    assert (record["body"] or record["event_name"]) == otlp.body


def test_watch_shows_the_selected_events_live_and_only_those(tmp_path):
    require_iptables()
    with live_agent(tmp_path, ["tcp"], ["tcpreset", "packetloss"]) as live:
        a, b = live.pod, live.plain
        iptables(a, "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP")
        pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        resets_b = Lines(live.cli("watch", "--netns", b.name, "--type", "TCPRESET_NOSOCK", "-o", "json", **pipe))
        drops_pod = Lines(live.cli("watch", "--namespace", POD_NAMESPACE, "--pod", POD_NAME,
                                   "--probe", "packetloss", "-o", "json", **pipe))
        resets_a = Lines(live.cli("watch", "--netns", str(a.inode), "--probe", "tcpreset", **pipe))
        watchers = (resets_b, drops_pod, resets_a)
        try:
            live.rx.wait_for(lambda: live.rx.value("kubeskoop.agent.event_stream.clients") == 3, timeout=15,
                             description="three watchers connected")
            t0 = time.monotonic()
            refused(b, [41001, 41002, 41003], 7011)
            first_b = resets_b.wait(1, LIVE)[0][0] - t0
            t1 = time.monotonic()
            a.python(DROPPED)
            refused(a, [43001, 43002], 7012)
            first_a = drops_pod.wait(1, LIVE)[0][0] - t1
            resets_b.wait(3, LIVE)
            drops_pod.wait(6, LIVE)
            resets_a.wait(4, LIVE)
            # Every event of both namespaces has reached the receiver, so has every watcher's queue:
            # one more second for a stray line to show.
            live.rx.wait_for(lambda: len(live.rx.log_records(resource={"kubeskoop.netns.inode": a.inode})) >= 10
                             and len(live.rx.log_records(resource={"kubeskoop.netns.inode": b.inode})) >= 9,
                             timeout=15, description="the events of both namespaces at the receiver")
            time.sleep(1)
        finally:
            codes = [w.stop() for w in watchers]
        print(f"first line {first_b:.2f} s (netns B), {first_a:.2f} s (pod) after the traffic")
        assert codes == [0, 0, 0], [w.proc.stderr.read() for w in watchers]

        got_b = [json.loads(line) for _, line in resets_b.lines()]
        assert sorted(tuple_of(e["attributes"]) for e in got_b) == [
            ("tcp", "127.0.0.1", 7011, "127.0.0.1", port) for port in (41001, 41002, 41003)]
        for e in got_b:
            assert (e["type"], e["event_name"]) == ("TCPRESET_NOSOCK", "kubeskoop.tcpreset.nosock")
            assert e["resource"]["kubeskoop.netns.inode"] == b.inode
            assert e["resource"]["kubeskoop.netns.name"] == b.name
            assert "k8s.pod.name" not in e["resource"]
            assert e["attributes"]["kubeskoop.reset.reason"] == "NO_SOCKET"

        got_pod = [json.loads(line) for _, line in drops_pod.lines()]
        assert sorted((e["attributes"]["kubeskoop.drop.reason"], *tuple_of(e["attributes"])) for e in got_pod) == [
            ("NETFILTER_DROP", "udp", "127.0.0.1", 42001, "127.0.0.1", 5000)] * 4 + [
            ("NO_SOCKET", "tcp", "127.0.0.1", port, "127.0.0.1", 7012) for port in (43001, 43002)]
        for e in got_pod:
            assert (e["type"], e["event_name"]) == ("PacketLoss", "kubeskoop.packetloss.drop")
            assert (e["resource"]["k8s.namespace.name"], e["resource"]["k8s.pod.name"]) == (POD_NAMESPACE, POD_NAME)
            assert e["resource"]["kubeskoop.netns.inode"] == a.inode

        for e in got_b + got_pod:
            same_as_otlp(live, e)

        rows = sorted(tuple(line.split("  ")[1:]) for _, line in resets_a.lines())
        who = f"{POD_NAMESPACE}/{POD_NAME}"
        assert rows == sorted(
            [(who, "TCPRESET_NOSOCK", f"tcp 127.0.0.1:7012 -> 127.0.0.1:{port}", "NO_SOCKET") for port in (43001, 43002)]
            + [(who, "TCPRESET_RECEIVE", f"tcp 127.0.0.1:{port} -> 127.0.0.1:7012", "syn_sent") for port in (43001, 43002)])
        assert first_a < LIVE and first_b < LIVE
        live.rx.wait_for(lambda: live.rx.value("kubeskoop.agent.event_stream.clients") == 0, timeout=15)
        assert live.rx.value("kubeskoop.agent.event_stream.dropped") == 0

