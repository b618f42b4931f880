# SPDX-License-Identifier: Apache-2.0
"""Three real network namespaces, real traffic in two of them, a real OTLP receiver.

Under each namespace's own resource the receiver must see exactly the counter increases that
namespace saw, and none from the others; over gRPC and over HTTP/protobuf.
"""

from __future__ import annotations

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.identity.keys import NODE, NetnsKey
from tests.helpers import cycle
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, tcp_refused, udp_to_closed_port

require_root()
pytestmark = pytest.mark.privileged

DEFAULT_PROBES = ["netdev", "tcp", "udp", "ip", "tcpext", "sock", "softnet"]
INODE = "kubeskoop.netns.inode"


def agent_for(rx: OTLPReceiver, protocol: str) -> Agent:
    endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
    config = parse({
        "address": "",  # no HTTP server needed here
        "metrics": {"probes": [{"name": n} for n in DEFAULT_PROBES]},
        "otlp": {"endpoint": endpoint, "protocol": protocol, "timeout": 5},
        "nodeName": "test-node",
    }, "test", environ={})
    return Agent(config)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_each_namespace_gets_exactly_its_own_increases(protocol):
    with OTLPReceiver() as rx, netns() as a, netns() as b, netns() as c:
        a.sleeper()
        b.sleeper()
        # c has no process at all: the agent reads it from a thread that entered it (setns).
        agent = agent_for(rx, protocol)
        try:
            agent.open()
            cycle(agent)  # baseline: counts from before the agent started are not reported
            udp_to_closed_port(a, 7)
            tcp_refused(b, 5)
            cycle(agent)
            rx.wait_metric_requests(2)
            transport = "grpc" if protocol == "grpc" else "http"
            assert rx.request_counts()[transport] == 2 and sum(rx.request_counts().values()) == 2

            def value(metric, ns):
                return rx.value(metric, resource={INODE: ns.inode})

            assert value("kubeskoop.udp.noports", a) == 7
            assert value("kubeskoop.udp.outdatagrams", a) == 7
            assert value("kubeskoop.udp.noports", b) == 0
            assert value("kubeskoop.udp.noports", c) == 0
            assert value("kubeskoop.tcp.attemptfails", b) == 5
            assert value("kubeskoop.tcp.activeopens", b) == 5
            assert value("kubeskoop.tcp.outrsts", b) == 5
            assert value("kubeskoop.tcp.attemptfails", a) == 0
            assert value("kubeskoop.tcp.attemptfails", c) == 0
            # All traffic was on lo: lo counts it, the pod-standard metric (which skips lo) has no series.
            assert rx.value("kubeskoop.netdev.txpackets", resource={INODE: a.inode},
                            attributes={"network.interface.name": "lo"}) == 7 + 7  # datagrams + ICMP unreachables
            assert not rx.points("k8s.pod.network.io", resource={INODE: a.inode})

            resources = {r[INODE]: r for r in rx.resources() if INODE in r}
            for ns in (a, b, c):
                res = resources[ns.inode]
                assert res["kubeskoop.netns.name"] == ns.name
                assert res["k8s.node.name"] == "test-node"
                assert res["service.instance.id"] == f"test-node.netns-{ns.inode}"
            node = [r for r in rx.resources() if r.get("service.name") == "otel-kubeskoop"]
            assert len(node) == 1 and node[0]["k8s.node.name"] == "test-node"
            assert len({tuple(sorted(r.items())) for r in rx.resources()}) == len(rx.resources())
            # Node-scope data only on the node resource; self-telemetry there too.
            assert rx.points("kubeskoop.softnet.processed", resource=node[0])
            assert not [p for p in rx.points("kubeskoop.softnet.processed") if INODE in p.resource and p.resource != node[0]]
            state = rx.points("kubeskoop.agent.probe.state", resource=node[0])
            assert {p.attributes["kubeskoop.probe"] for p in state} == set(DEFAULT_PROBES)
            assert all(p.attributes["kubeskoop.probe.state"] == "running" for p in state)
            counter = rx.points("kubeskoop.udp.noports", resource={INODE: a.inode})[0]
            assert counter.is_monotonic and counter.temporality == "cumulative"
        finally:
            agent.stop()


def test_a_namespace_that_disappears_is_exported_once_more_then_released():
    with OTLPReceiver() as rx, netns() as a:
        with netns() as b:
            b.sleeper()
            agent = agent_for(rx, "http/protobuf")
            agent.open()
            try:
                cycle(agent)
                udp_to_closed_port(b, 3)
                cycle(agent)
                b_inode = b.inode
            except BaseException:
                agent.stop()
                raise
        try:
            cycle(agent)  # b is gone: its last values go out once more
            cycle(agent)  # and then never again
            rx.wait_metric_requests(4)
            reqs = rx.metric_requests()

            def inodes(req):
                return {a.value.int_value for rm in req.resource_metrics for a in rm.resource.attributes if a.key == INODE}

            assert [b_inode in inodes(r) for r in reqs] == [True, True, True, False]
            assert a.inode in inodes(reqs[-1])
            last_b = [p for p in rx.points("kubeskoop.udp.noports", resource={INODE: b_inode}, last=False)]
            assert [p.value for p in last_b] == [0, 3, 3]
            assert NetnsKey(b_inode) not in agent.pipeline and NetnsKey(a.inode) in agent.pipeline and NODE in agent.pipeline
        finally:
            agent.stop()
