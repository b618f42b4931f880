# SPDX-License-Identifier: Apache-2.0
"""tcprtt and tcpconnect per peer on the real kernel: a client namespace, known as pod shop/client
through the API stand-in, connects over a veth to a server namespace known as pod shop/web-1, to
Service shop/checkout (a ClusterIP the stand-in serves, DNAT'ed to the server by an iptables rule
in the client's namespace, as kube-proxy would), and to an address of the server's namespace known
as neither (external). RTT samples and connect counts must land on the right remote in the right
namespace, exactly; past maxRemotes, the overflow remote and the cap's counter move."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from otel_kubeskoop.probes import tcpconnect, tcprtt
from otel_kubeskoop.topology.peers import PeerDirectory
from otel_kubeskoop.topology.pods import PodCache
from otel_kubeskoop.topology.remotes import RemoteDirectory
from otel_kubeskoop.topology.services import ServiceCache
from tests.kube_apiserver import KubeAPIServer, make_pod, make_service
from tests.privileged.netnsutil import TestNetns, netns, require_root, veth_pair
from tests.privileged.probes.conftest import Harness, iptables, no_ipv6, require_iptables
from tests.privileged.probes.delayutil import python_ready
from tests.privileged.probes.latencyutil import count

require_root()
require_iptables()

pytestmark = pytest.mark.privileged

CLIENT, SERVER, OTHER = "10.231.0.1", "10.231.0.2", "10.231.0.3"
CLUSTER_IP = "10.96.77.7"
PORT, CLOSED = 5303, 5304
NODE = "node-remotes"

POD = (("kubeskoop.remote.kind", "pod"), ("kubeskoop.remote.namespace", "shop"),
       ("kubeskoop.remote.name", "web-1"))
CLIENT_POD = (("kubeskoop.remote.kind", "pod"), ("kubeskoop.remote.namespace", "shop"),
              ("kubeskoop.remote.name", "client"))
SERVICE = (("kubeskoop.remote.kind", "service"), ("kubeskoop.remote.namespace", "shop"),
           ("kubeskoop.remote.name", "checkout"))
EXTERNAL = (("kubeskoop.remote.kind", "external"),)
OVERFLOW = (("kubeskoop.remote.kind", "overflow"),)

# The server: accepts `n` connections, reading each until EOF (a thread each) with an immediate
# ACK per read, so that the sender's RTT samples are the path's.
SINK = r"""
import socket, threading
s = socket.create_server(("0.0.0.0", {port}))
print("ready", flush=True)
def read(c):
    while True:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if not c.recv(65536):
            break
    c.close()
threads = [threading.Thread(target=read, args=(s.accept()[0],)) for _ in range({n})]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""
# The client: one connection to each target, all open at once (tcprtt's per-socket interval is
# kept by socket address, which a closed socket's successor may reuse), five writes on each.
SEND = r"""
import socket, time
conns = [socket.create_connection(target) for target in {targets!r}]
for _ in range(5):
    for c in conns:
        c.sendall(b"x" * 16000)
    time.sleep(0.02)
for c in conns:
    c.close()
"""
REFUSED = r"""
import socket
for _ in range({n}):
    try:
        socket.create_connection(({host!r}, {port}))
    except ConnectionRefusedError:
        continue
    raise SystemExit("connected to a closed port")
"""


@pytest.fixture
def remotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteDirectory]:
    """The agent's classification over the stand-in: this node's pods shop/client and
    shop/web-1, and Service shop/checkout."""
    with KubeAPIServer() as api:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
        api.add_pod(make_pod("client", "shop", "00000000-0000-4000-8000-000000000701", NODE, pod_ip=CLIENT))
        api.add_pod(make_pod("web-1", "shop", "00000000-0000-4000-8000-000000000702", NODE, pod_ip=SERVER))
        api.add_service(make_service("checkout", "shop", (CLUSTER_IP,)))
        pods, services = PodCache(NODE), ServiceCache()
        pods.start()
        services.start()
        try:
            assert pods.wait_synced(15) and services.wait_synced(15)
            peers = PeerDirectory(NODE)
            peers.refresh(pods.pods().values(), None)
            yield RemoteDirectory(peers, services.get)
        finally:
            services.stop()
            pods.stop()


@contextmanager
def topology() -> Iterator[tuple[TestNetns, TestNetns]]:
    """client -- veth -- server; the server also owns OTHER; the client DNATs CLUSTER_IP:80 to
    the server and routes everything else through it."""
    with netns() as client, netns() as server:
        no_ipv6(client, server)
        with veth_pair(client, server) as (_, dev_b):
            server.run("ip", "addr", "add", f"{OTHER}/32", "dev", dev_b)
            client.run("ip", "route", "add", "default", "via", SERVER)
            iptables(client, "-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", "tcp", "--dport", "80",
                     "-j", "DNAT", "--to-destination", f"{SERVER}:{PORT}")
            yield client, server


def by_remote(h: Harness, probe: str, instrument: str, ns: TestNetns) -> dict[Any, Any]:
    return h.series(probe, ns.inode, instrument)


def send(client: TestNetns, *targets: tuple[str, int]) -> None:
    client.python(SEND.format(targets=list(targets)))


def overflow(h: Harness, probe: str) -> int:
    return h.collect(probe)[("kubeskoop.agent.overflow", None, (("kubeskoop.cap", f"{probe}.remotes"),))]


def test_rtt_and_connects_land_on_pod_service_and_external(harness: Harness, remotes: RemoteDirectory) -> None:
    harness.cycle.remote = remotes
    harness.start(tcprtt.SPEC, tcprtt.SPEC.args(sampleIntervalMs=5000))
    harness.start(tcpconnect.SPEC)
    with topology() as (client, server):
        harness.rescan()
        sink = python_ready(server, SINK.format(port=PORT, n=3))
        send(client, (SERVER, PORT), (CLUSTER_IP, 80), (OTHER, PORT))
        sink.wait(10)
        client.python(REFUSED.format(host=SERVER, port=CLOSED, n=2))
        client.python(REFUSED.format(host=OTHER, port=CLOSED, n=1))
        harness.drain()
        rtt_client = by_remote(harness, "tcprtt", "kubeskoop.tcprtt.remote.srtt", client)
        rtt_server = by_remote(harness, "tcprtt", "kubeskoop.tcprtt.remote.srtt", server)
        attempts = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.attempts", client)
        failures = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.failures", client)
        duration = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.duration", client)
        server_attempts = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.attempts", server)
        per_ns = harness.series("tcpconnect", client.inode, "kubeskoop.tcpconnect.attempts")

    # One RTT sample per connection end (the exchange fits in one 5 s interval): the client's
    # towards each remote; the server's three, all from the client pod (DNAT leaves the source).
    assert {attrs: count(h) for attrs, h in rtt_client.items()} == {POD: 1, SERVICE: 1, EXTERNAL: 1}
    assert {attrs: count(h) for attrs, h in rtt_server.items()} == {CLIENT_POD: 3}
    assert all(h.sum < 0.01 for h in rtt_client.values())  # a veth: well under 10 ms
    # The socket keeps the ClusterIP it connected to: the Service, not the pod behind it.
    assert attempts == {POD: 3, SERVICE: 1, EXTERNAL: 2}
    assert failures == {(("error.type", "refused"), *POD): 2, (("error.type", "refused"), *EXTERNAL): 1}
    assert {attrs: count(h) for attrs, h in duration.items()} == {POD: 1, SERVICE: 1, EXTERNAL: 1}
    assert server_attempts == {}  # the server made no connect
    assert per_ns == {(): 6}  # the per-namespace count is whole: the sum over the remotes


def test_past_max_remotes_the_overflow_remote_and_its_counter_move(harness: Harness,
                                                                  remotes: RemoteDirectory) -> None:
    harness.cycle.remote = remotes
    # A short interval: a socket may take the address, and so the interval, of one closed
    # before it (bpf/tcprtt.bpf.h), and this test sends in turns.
    harness.start(tcprtt.SPEC, tcprtt.SPEC.args(sampleIntervalMs=10, maxRemotes=2))
    harness.start(tcpconnect.SPEC, tcpconnect.SPEC.args(maxRemotes=2))
    with topology() as (client, server):
        harness.rescan()
        sink = python_ready(server, SINK.format(port=PORT, n=4))
        # One remote per collection, so that which one finds the cap full is known.
        for target in ((SERVER, PORT), (CLUSTER_IP, 80)):
            send(client, target)
            harness.collect("tcprtt"), harness.collect("tcpconnect")
        rtt_before, connect_before = overflow(harness, "tcprtt"), overflow(harness, "tcpconnect")
        send(client, (OTHER, PORT), (OTHER, PORT))
        sink.wait(10)
        client.python(REFUSED.format(host=OTHER, port=CLOSED, n=1))
        rtt_client = by_remote(harness, "tcprtt", "kubeskoop.tcprtt.remote.srtt", client)
        attempts = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.attempts", client)
        failures = by_remote(harness, "tcpconnect", "kubeskoop.tcpconnect.remote.failures", client)
        rtt_after, connect_after = overflow(harness, "tcprtt"), overflow(harness, "tcpconnect")

    assert set(rtt_client) == {POD, SERVICE, OVERFLOW} and all(count(h) >= 1 for h in rtt_client.values())
    assert attempts == {POD: 1, SERVICE: 1, OVERFLOW: 3}
    assert failures == {(("error.type", "refused"), *OVERFLOW): 1}
    # Each address folded into the overflow remote counts once per collection it is seen in: the
    # external address, once here for each probe.
    assert (rtt_before, connect_before) == (0, 0)
    assert (rtt_after, connect_after) == (1, 1)
