# SPDX-License-Identifier: Apache-2.0
"""tcprtt on the real kernel: a client streams writes over a veth to a reader in another
throw-away namespace, once as it is and once with a 20 ms delay on what the client sends (an
NFQUEUE holder, delayutil.py: this kernel, like many, has no netem). The delay must move every
RTT sample of both ends (the client's from its data's ACKs, the reader's from the handshake)
from below 16.8 ms to the 16.8-33.6 ms bucket, averaging 20 to 30 ms; the retransmission timeout stays at or above TCP's 200 ms minimum;
the sample interval bounds the samples per connection."""

from __future__ import annotations

import time
from typing import Any

import pytest

from otel_kubeskoop.probes import tcprtt
from otel_kubeskoop.probes._latency import BOUNDS
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, no_ipv6
from tests.privileged.probes.delayutil import delayed_output, python_ready
from tests.privileged.probes.latencyutil import KINDS, at_least, below, count, with_kind

require_root()

pytestmark = pytest.mark.privileged

SERVER = "10.231.0.2"
PORT = 5301

# The server: reads until EOF, asking for an immediate ACK after every read (TCP_QUICKACK
# lasts until the next delayed-ACK decision), so that the sender's RTT samples are the path's
# and not a delayed-ACK timer's.
SINK = r"""
import socket
s = socket.create_server(({host!r}, {port}))
print("ready", flush=True)
c, _ = s.accept()
while True:
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    if not c.recv(65536):
        break
"""

# The client: `rounds` writes of 16 kB, `gap` seconds apart.
CLIENT = r"""
import socket, time
c = socket.create_connection(({host!r}, {port}))
for _ in range({rounds}):
    c.sendall(b"x" * 16000)
    time.sleep({gap})
c.close()
"""


def exchange(client: TestNetns, server: TestNetns, rounds: int, gap: float) -> float:
    """Send ``rounds`` writes from ``client`` to a reader in ``server``; the seconds it took,
    until the reader has read the end of the stream (the client may exit with its last writes
    still in flight). The client's RTT samples come from the ACKs of its data; the server sends
    no data, so its smoothed RTT is the handshake's (SYN-ACK to ACK), sampled as it receives."""
    proc = python_ready(server, SINK.format(host=SERVER, port=PORT))
    began = time.monotonic()
    client.python(CLIENT.format(host=SERVER, port=PORT, rounds=rounds, gap=gap))
    proc.wait(10)
    return time.monotonic() - began


def histograms(h: Harness, ns: int) -> dict[str, Any]:
    """quantity -> the namespace's histogram (None when it has none)."""
    return {quantity: h.series("tcprtt", ns, f"kubeskoop.tcprtt.{quantity}").get(())
            for quantity in ("srtt", "rttvar", "rto")}


def rto_at_least_min(rto: Any, samples: int) -> None:
    """One RTO per sample, each at least TCP_RTO_MIN (200 ms: the bucket from 134 ms on)."""
    assert count(rto) == samples and below(rto, BOUNDS[25]) == 0, rto
    assert rto.sum / samples >= 0.2


@pytest.mark.parametrize("kind", KINDS)
def test_a_20ms_delay_moves_the_rtt_histogram(harness: Harness, kind: str) -> None:
    harness.start(tcprtt.SPEC, tcprtt.SPEC.args(sampleIntervalMs=50),
                  factory=with_kind(tcprtt.TcprttProbe, kind))
    with netns() as a, netns() as b, netns() as c, netns() as d:
        no_ipv6(a, b, c, d)
        with veth_pair(a, b), veth_pair(c, d):
            harness.rescan()
            exchange(a, b, rounds=40, gap=0.02)
            with delayed_output(c, SERVER, 0.020):
                took = exchange(c, d, rounds=40, gap=0.02)
            fast = {ns.name: histograms(harness, ns.inode) for ns in (a, b)}
            slow = {ns.name: histograms(harness, ns.inode) for ns in (c, d)}

    for name, got in fast.items():
        srtt = got["srtt"]
        assert count(srtt) >= 3, (name, srtt)
        assert at_least(srtt, BOUNDS[23]) == 0, (name, srtt.counts)  # nothing at 16.8 ms or more
        rto_at_least_min(got["rto"], count(srtt))
        assert count(got["rttvar"]) == count(srtt)
    for name, got in slow.items():
        srtt = got["srtt"]
        # 40 writes 20 ms apart at one sample per 50 ms: 0.8 s or more, 16 or more samples; at
        # most one per 50 ms of the exchange (one sampling socket per namespace), which takes
        # longer on a loaded machine. Unlimited, every ACK and segment would be a sample:
        # hundreds.
        assert 8 <= count(srtt) <= took / 0.050 + 1, (name, took, srtt.counts)
        # all at 16.8 ms or more; below 33.6 ms but for the odd one a late ACK (a delayed-ACK
        # timer, a descheduled reader) pushed up (one in 31 in a run here)
        assert below(srtt, BOUNDS[23]) == 0 and at_least(srtt, BOUNDS[24]) <= count(srtt) // 10, (name, srtt.counts)
        assert 0.020 <= srtt.sum / count(srtt) < 0.030, (name, srtt.sum)
        rto_at_least_min(got["rto"], count(srtt))
        assert count(got["rttvar"]) == count(srtt)


def test_the_interval_bounds_samples_per_connection(harness: Harness) -> None:
    harness.start(tcprtt.SPEC, tcprtt.SPEC.args(sampleIntervalMs=5000))
    with netns() as a, netns() as b:
        no_ipv6(a, b)
        with veth_pair(a, b):
            harness.rescan()
            took = exchange(a, b, rounds=200, gap=0)
            assert took < 5, "the exchange must fit in one interval for the count to be exact"
            client, server = (harness.series("tcprtt", ns.inode, "kubeskoop.tcprtt.srtt")[()]
                              for ns in (a, b))
    # One sample per connection end: the first segment after its first RTT measurement.
    assert (count(client), count(server)) == (1, 1)
