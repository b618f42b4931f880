# SPDX-License-Identifier: Apache-2.0
"""The compat endpoint's text: upstream's names and labels, the collection's timestamp on every
sample, prometheus_client's format, and upstream's tuple labels (flow counted once per packet,
pods and the node named by address, a bounded set of series)."""

from __future__ import annotations

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_kubeskoop.probe import Sample
from otel_kubeskoop.identity.labels import CompatLabels
from otel_kubeskoop.telemetry.compat import CompatEndpoint
from otel_kubeskoop.topology.peers import UNKNOWN
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.probes.flow import FLOW_BYTES
from otel_kubeskoop.probes.udp import INSTRUMENTS as UDP
from otel_kubeskoop.vocabulary.instruments import TUPLE_COMPAT, InstrumentKind, InstrumentSpec

NOW = 1_790_000_000.25
(NOPORTS,) = [i for i in UDP if i.name == "kubeskoop.udp.noports"]
NODE = "node-a"
PEERS = {"10.244.1.5": ("pod", NODE, "shop", "web-1"), "10.244.1.6": ("pod", NODE, "shop", "db-0"),
         "192.0.2.2": ("node", NODE, "", "")}
# Upstream's packetloss: the tuple labels and k8s_node.
DROPS = InstrumentSpec("kubeskoop.packetloss.example", InstrumentKind.COUNTER, "{packet}", "Drops by tuple",
                       (A.NETWORK_TRANSPORT, A.SOURCE_ADDRESS, A.DESTINATION_ADDRESS),
                       compat="kubeskoop_packetloss_total",
                       compat_labels=(*TUPLE_COMPAT, (A.K8S_NODE_NAME, "k8s_node")))


class Directory:
    """The resource directory as the endpoint asks it: entity labels by key, addresses by PEERS."""

    def __init__(self, labels: dict[object, CompatLabels | None]) -> None:
        self.labels = labels

    def compat_labels(self, key: object) -> CompatLabels | None:
        return self.labels.get(key)

    def peer(self, ip: str) -> tuple[str, str, str, str]:
        return PEERS.get(ip, UNKNOWN)


def endpoint(labels: dict[object, CompatLabels | None], max_tuple_series: int = 100,
             extra: tuple[str, ...] = ()) -> CompatEndpoint:
    return CompatEndpoint(NODE, extra, Directory(labels), max_tuple_series=max_tuple_series, clock=lambda: NOW)


def series(ep: CompatEndpoint) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(ep.render()[2].decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            assert s.timestamp == NOW, s  # the collection's time, on every sample
            out[key] = s.value
    return out


def flow(direction: str, src: str, dst: str, value: int, *ports: int, transport: str = "tcp") -> Sample:
    attrs = [(A.NETWORK_IO_DIRECTION, direction), (A.NETWORK_TYPE, "ipv4"), (A.NETWORK_TRANSPORT, transport),
             (A.SOURCE_ADDRESS, src), (A.DESTINATION_ADDRESS, dst)]
    if ports:
        attrs += [(A.SOURCE_PORT, ports[0]), (A.DESTINATION_PORT, ports[1])]
    return Sample(FLOW_BYTES, value, None, tuple(attrs))


def tuple_labels(src: str, dst: str, protocol: str = "TCP", sport: str = "0", dport: str = "0",
                 **more: str) -> tuple[tuple[str, str], ...]:
    labels = {"protocol": protocol, "sport": sport, "dport": dport, "src": src, "dst": dst, **more}
    for end, ip in (("src", src), ("dst", dst)):
        kind, node, namespace, pod = PEERS.get(ip, UNKNOWN)
        labels.update({f"{end}_type": kind, f"{end}_node": node, f"{end}_namespace": namespace, f"{end}_pod": pod})
    return tuple(sorted(labels.items()))


def test_text_is_prometheus_client_format_with_the_collection_timestamp():
    ep = endpoint({7: CompatLabels('pay"ments', "api-0", (("app", "a\\b\nc"),))}, extra=("app",))
    ep.update({7: [Sample(NOPORTS, 12)]})
    fam = GaugeMetricFamily("kubeskoop_udp_noports", NOPORTS.description,
                            labels=["k8s_node", "k8s_namespace", "k8s_pod", "app"])
    fam.add_metric([NODE, 'pay"ments', "api-0", "a\\b\nc"], 12, timestamp=NOW)

    class One:
        def collect(self):
            return [fam]

    text = ep.render()[2].decode()
    assert text.startswith(generate_latest(One()).decode())
    assert f'kubeskoop_agent_compat_unattributed_namespaces{{k8s_node="{NODE}"}} 0.0 {int(NOW * 1000)}\n' in text


def test_flow_carries_upstream_tuple_labels_and_counts_each_packet_once():
    ep = endpoint({1: CompatLabels("shop", "web-1"), 2: CompatLabels("shop", "db-0"), "node": CompatLabels()})
    web, db, outside, node = "10.244.1.5", "10.244.1.6", "203.0.113.9", "192.0.2.2"
    ep.update({
        # web -> db on this node: web's egress and db's ingress see the same 100 bytes.
        1: [flow("transmit", web, db, 100), flow("receive", outside, web, 50), flow("transmit", web, outside, 30)],
        2: [flow("receive", web, db, 100), flow("receive", node, db, 7, 40000, 5432)],
        # The host's NIC (interfaceName) sees web's packets out again, and the node's own.
        "node": [flow("transmit", web, outside, 30), flow("transmit", node, outside, 70, transport="ipv6-icmp")],
        # A namespace no pod owns: its traffic still counts (the series name no observer).
        3: [flow("transmit", "10.99.0.1", outside, 5, transport="igmp")],
    })
    got = {labels: v for (name, labels), v in series(ep).items() if name == "kubeskoop_flow_bytes"}
    assert got == {
        tuple_labels(web, db): 100,
        tuple_labels(outside, web): 50,
        tuple_labels(web, outside): 30,
        tuple_labels(node, db, sport="40000", dport="5432"): 7,
        tuple_labels(node, outside, protocol="ICMP6"): 70,
        tuple_labels("10.99.0.1", outside, protocol="IP"): 5,
    }


def test_packetloss_adds_k8s_node_and_every_tuple_metric_is_bounded():
    ep = endpoint({"node": CompatLabels()}, max_tuple_series=2)

    def drops(*pairs: tuple[str, int]) -> list[Sample]:
        return [Sample(DROPS, v, None, ((A.NETWORK_TRANSPORT, "udp"), (A.SOURCE_ADDRESS, src),
                                        (A.DESTINATION_ADDRESS, "10.244.1.5"))) for src, v in pairs]

    ep.update({"node": drops(("198.51.100.3", 3), ("198.51.100.1", 1), ("198.51.100.2", 2))})
    got = {labels: v for (name, labels), v in series(ep).items() if name == "kubeskoop_packetloss_total"}
    keep = [tuple(sorted(tuple_labels(src, "10.244.1.5", "UDP") + (("k8s_node", NODE),))) for src in ("198.51.100.1", "198.51.100.2")]
    overflow = tuple(sorted({"protocol": "", "src": "overflow", "dst": "overflow", "sport": "0", "dport": "0",
                             "k8s_node": NODE, **{f"{e}_{f}": "" for e in ("src", "dst") for f in ("node", "namespace", "pod")},
                             "src_type": "unknown", "dst_type": "unknown"}.items()))
    assert got == {keep[0]: 1, keep[1]: 2, overflow: 3}
    assert ep.overflow == 1  # summed over collections: kubeskoop.agent.overflow{compat.tuple_series}
    assert series(ep)[("kubeskoop_agent_compat_tuple_overflow",
                       (("k8s_node", NODE), ("metric", "kubeskoop_packetloss_total")))] == 1
    # A tuple keeps its series while it is there; a new one waits for room.
    ep.update({"node": drops(("198.51.100.0", 9), ("198.51.100.2", 4))})
    got = {dict(labels)["src"]: v for (name, labels), v in series(ep).items() if name == "kubeskoop_packetloss_total"}
    assert got == {"198.51.100.2": 4, "198.51.100.0": 9}


@pytest.mark.parametrize("transport,word", [("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP"),
                                            ("ipv6-icmp", "ICMP6"), ("sctp", "IP"), ("gre", "IP")])
def test_protocol_is_upstreams_word(transport, word):
    ep = endpoint({})
    ep.update({1: [flow("transmit", "10.0.0.1", "10.0.0.2", 1, transport=transport)]})
    (labels,) = [dict(labels) for name, labels in series(ep) if name == "kubeskoop_flow_bytes"]
    assert labels["protocol"] == word


def test_integer_shortcut_formats_as_go_does():
    from prometheus_client.utils import floatToGoString

    from otel_kubeskoop.telemetry.compat import format_value

    values = [0, 1, 9, 99999, 100000, 999999, 1000000, 1000001, 1234567, 123456789, 10**14 + 3, 10**15 - 1]
    values += [7 * 10**k + j for k in range(15) for j in (0, 1, 30)]
    values = [v for v in values if v < 10**15]
    for v in values + [10**15, 10**20, -5, 2.5, 1e-9, float("inf")]:
        assert format_value(v) == floatToGoString(v), v
