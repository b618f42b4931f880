# SPDX-License-Identifier: Apache-2.0
"""The whole pipeline over fixtures, compared with committed golden files (``tests/fixtures/golden``).

A fixed ``/proc`` tree (``tests/fixtures/proc``: the host and two namespaces; ``tests/fixtures/pods``:
the processes of three pods, with their cgroup tree), recorded sock_diag answers
(``tests/fixtures/netlink``) and recorded ring-buffer records (``tests/fixtures/bpf_events``) run
through the real agent: probes, runtime, resource directory (with pod metadata from the Kubernetes
API stand-in), metric pipeline, event emitter and compat endpoint. Two cycles: the first is the
baseline, then the files in ``golden/later`` replace their originals (counters moved on) and the
recorded events arrive, then the second. Its OTLP metrics request, the OTLP logs request(s) and the
compat ``/metrics`` text must equal ``metrics.json``, ``logs.json`` and ``compat.txt``, with
nondeterministic fields normalised (timestamps, this host's name, measured durations).

``make golden`` rewrites the golden files (``pytest --update-golden``); review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from pyroute2.netlink import NETLINK_SOCK_DIAG

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.bpf.generated.common import TypecountKey
from otel_kubeskoop.bpf.generated.packetloss import PacketlossKey
from otel_kubeskoop.config import parse
from otel_kubeskoop.netlink.sockets import NetnsSockets
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes import REGISTRY, packetloss, tcpreset, tcpretrans
from otel_kubeskoop.probes._decode import KernelNames
from otel_kubeskoop.probes.tcpsummary import TcpSummaryProbe
from tests.helpers import MemoryExporter, MemoryLogExporter
from tests.kube_apiserver import KubeAPIServer, make_pod, make_replicaset
from tests.unit.netlink.fakes import FakeNs, RecordedSocket, opener
from tests.unit.probes import bpfdumps
from tests.unit.probes.test_tcpsummary import answers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "golden"
NODE = "golden-node"
HOST, POD_A_NS, PLAIN_NS = 4026531840, 4026532281, 4026532282
POD_A = "0c5f7e3a-8d1b-4b8e-9a51-2f6c3d7e8a90"  # namespace 4242 (its cgroup: golden/proc/4242/cgroup)
POD_B = "7a3d2c1b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # hostNetwork: processes, no namespace of its own
STATIC = "8daa50c3a64c9ff60bb9eab7b44b56fd"  # a static pod's kubelet UID, known to the API by its mirror
MIRROR = "5e2d7c1a-9b3f-4c6d-8e0a-1b2c3d4e5f60"
METRIC_PROBES = ["netdev", "tcp", "udp", "ip", "tcpext", "sock", "softnet", "ipvs", "fd", "io", "tcpsummary",
                 "packetloss", "tcpretrans"]
# Values measured by the agent itself: normalised to 0.
MEASURED = {"kubeskoop.agent.probe.duration", "kubeskoop.agent.cycle.duration"}


class RecordedTcpSummary(TcpSummaryProbe):
    """tcpsummary with the recorded sock_diag answers for the kernel of every namespace."""

    def __init__(self, args: Any, ctx: Any) -> None:
        super().__init__(args, ctx)
        self.sockets = FixtureSockets(NETLINK_SOCK_DIAG, opener=opener(lambda inode: RecordedSocket(answers())))

    def start(self) -> None:
        pass  # no kernel to check


class FixtureSockets(NetnsSockets):
    """The fixture tree's namespaces have no nsfs file to enter: a handle that opens /dev/null."""

    def sync(self, namespaces: Any) -> Any:
        return super().sync({inode: FakeNs(inode) for inode in namespaces})


# probe -> (recorded records, its decoder, the namespace the events are replayed in)
REPLAYS: dict[str, tuple[list[str], Callable[[bpfdumps.Dump], Event], int]] = {
    "tcpreset": (["tcpreset_nosock_ipv4", "tcpreset_active_ipv4"],
                 lambda d: tcpreset.TABLE.decode(d.raw, d.names, 0), POD_A_NS),
    "packetloss": (["packetloss_no_socket_ipv6"],
                   lambda d: packetloss.decode_packetloss(d.raw, d.names, 0, d.kallsyms), PLAIN_NS),
    "tcpretrans": (["tcpretrans_syn_ipv4"], lambda d: tcpretrans.TABLE.decode(d.raw, d.names, 0), HOST),
}


class RingBufferReplay:
    """In place of an eBPF probe: the records its ring buffer held, decoded by the probe's own
    decoder and handed to ``ctx.emit`` when the event pump would call ``consume``."""

    def __init__(self, args: Any, ctx: Any) -> None:
        self.ctx = ctx
        dumps, decode, netns = REPLAYS[ctx.name]
        self.events = [dataclasses.replace(decode(bpfdumps.read(bpfdumps.DUMPS / f"{d}.dump")), netns=netns)
                       for d in dumps]

    def start(self) -> None:
        pass

    def consume(self) -> int:
        for event in self.events:
            self.ctx.emit(event)
        return len(self.events)

    def collect(self) -> list:
        return []

    def stop(self) -> None:
        pass


POD_A_IP, NODE_IP, OUTSIDE = "10.244.1.17", "172.18.0.3", "203.0.113.7"  # NODE_IP: pod B's, hostNetwork
NETFILTER_DROP, NO_SOCKET = 12, 3
DROP_NAMES = KernelNames(drop_reasons={NO_SOCKET: "SKB_DROP_REASON_NO_SOCKET", NETFILTER_DROP: "SKB_DROP_REASON_NETFILTER_DROP"})
# probe -> its kernel maps as a collection reads them: counts per namespace, and per tuple for the
# compat endpoint's tuple labels (a pod of this node, this node, an address of neither).
MAPS: dict[str, Callable[[], dict[str, bpfdumps.FakeMap]]] = {
    "packetloss": lambda: {
        "counters": bpfdumps.FakeMap([(PacketlossKey(POD_A_NS, 1, NETFILTER_DROP, 2, 6), 2),
                                      (PacketlossKey(POD_A_NS, 1, NO_SOCKET, 2, 17), 3)]),
        "counters_full": bpfdumps.FakeMap({0: 0}),
        "losses": bpfdumps.FakeMap({0: 0, 1: 0}),
        "tuples": bpfdumps.FakeMap([(bpfdumps.flow_tuple(NODE_IP, POD_A_IP, 6), 2),
                                    (bpfdumps.flow_tuple(OUTSIDE, POD_A_IP, 17), 3)]),
        "tuples_inserted": bpfdumps.FakeMap({0: 2}),
        "tuples_netfilter": bpfdumps.FakeMap([(bpfdumps.flow_tuple(NODE_IP, POD_A_IP, 6), 2)]),
        "tuples_netfilter_inserted": bpfdumps.FakeMap({0: 1}),
    },
    "tcpretrans": lambda: {
        "counters": bpfdumps.FakeMap([(TypecountKey(POD_A_NS, 1, 3), 4)]),
        "counters_full": bpfdumps.FakeMap({0: 0}),
        "losses": bpfdumps.FakeMap({0: 0, 1: 0}),
        "tuples": bpfdumps.FakeMap([(bpfdumps.flow_tuple(POD_A_IP, OUTSIDE, 6, 43210, 443), 4)]),
        "tuples_inserted": bpfdumps.FakeMap({0: 1}),
    },
}


class RecordedMaps(RingBufferReplay):
    """An eBPF probe whose events are replayed and whose metrics come from its kernel maps as
    recorded in MAPS, read by the probe's own collection."""

    def __init__(self, args: Any, ctx: Any) -> None:
        super().__init__(args, ctx)
        self.reader = REGISTRY[ctx.name].factory(args, ctx)
        self.reader.names = DROP_NAMES
        self.reader.bpf.obj = bpfdumps.FakeObject(MAPS[ctx.name]())

    def collect(self) -> list:
        return self.reader.collect()


def registry() -> dict:
    out = dict(REGISTRY)
    out["tcpsummary"] = dataclasses.replace(REGISTRY["tcpsummary"], factory=RecordedTcpSummary)
    for name in REPLAYS:
        out[name] = dataclasses.replace(REGISTRY[name], factory=RecordedMaps if name in MAPS else RingBufferReplay)
    return out


def proc_tree(root: Path) -> None:
    """The host and its namespaces, the pods' processes, and pod A's cgroup file for namespace 4242."""
    shutil.copytree(FIXTURES / "proc", root, symlinks=True)
    shutil.copytree(FIXTURES / "pods" / "proc", root, symlinks=True, dirs_exist_ok=True)
    shutil.copytree(GOLDEN / "proc", root, dirs_exist_ok=True)


def api_pods(api: KubeAPIServer) -> None:
    api.add_replicaset(make_replicaset("web-7d4b9c", "shop", deployment="web"))
    api.add_pod(make_pod("web-7d4b9c-x2x9q", "shop", POD_A, NODE, labels={"app": "web"},
                         owner=("ReplicaSet", "web-7d4b9c"), pod_ip="10.244.1.17"))
    api.add_pod(make_pod("node-agent-5kq2p", "monitoring", POD_B, NODE, labels={"app": "node-agent"},
                         owner=("DaemonSet", "node-agent"), host_network=True))
    api.add_pod(make_pod("etcd-golden-node", "kube-system", MIRROR, NODE, labels={"component": "etcd"},
                         owner=("Node", NODE), annotations={"kubernetes.io/config.mirror": STATIC}))


# Normalisation ---------------------------------------------------------------------------------


def _sorted_attributes(holder: dict) -> None:
    holder["attributes"] = sorted(holder.get("attributes", []), key=lambda kv: kv["key"])
    for kv in holder["attributes"]:
        if kv["key"] == "host.name":
            kv["value"] = {"stringValue": "<host>"}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def metrics_json(request: ExportMetricsServiceRequest) -> dict:
    request = ExportMetricsServiceRequest.FromString(request.SerializeToString())
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in getattr(metric, metric.WhichOneof("data")).data_points:
                    point.ClearField("time_unix_nano")
                    point.ClearField("start_time_unix_nano")
                    if metric.name in MEASURED:
                        point.as_double = 0.0
    doc = MessageToDict(request)
    for rm in doc["resourceMetrics"]:
        _sorted_attributes(rm["resource"])
        for sm in rm["scopeMetrics"]:
            sm["metrics"].sort(key=lambda m: m["name"])
            for metric in sm["metrics"]:
                data = next(metric[k] for k in ("gauge", "sum", "histogram") if k in metric)
                for point in data["dataPoints"]:
                    _sorted_attributes(point)
                data["dataPoints"].sort(key=_canonical)
    doc["resourceMetrics"].sort(key=lambda rm: _canonical(rm["resource"]))
    return doc


def logs_json(requests: list[ExportLogsServiceRequest]) -> dict:
    """Every request's records, one ResourceLogs per resource (a batch may have been cut in two)."""
    by_resource: dict[str, dict] = {}
    for request in requests:
        for rl in MessageToDict(request)["resourceLogs"]:
            _sorted_attributes(rl["resource"])
            for sl in rl["scopeLogs"]:
                for record in sl["logRecords"]:
                    record.pop("observedTimeUnixNano")  # when the agent built the record
                    _sorted_attributes(record)
                entry = by_resource.setdefault(_canonical(rl["resource"]), {
                    "resource": rl["resource"], "scopeLogs": [{"scope": sl["scope"], "logRecords": []}]})
                entry["scopeLogs"][0]["logRecords"] += sl["logRecords"]
    for entry in by_resource.values():
        entry["scopeLogs"][0]["logRecords"].sort(key=_canonical)
    return {"resourceLogs": [by_resource[k] for k in sorted(by_resource)]}


def compat_text(body: bytes) -> str:
    """The exposition with each family's samples in sorted order (they follow the resources' order),
    and the collection's time, which every sample carries, as ``<collection time>``."""
    out: list[str] = []
    samples: list[str] = []
    stamps: set[str] = set()
    for line in body.decode().splitlines():
        if line.startswith("#"):
            out += sorted(samples)
            samples = []
            out.append(line)
        else:
            sample, stamp = line.rsplit(" ", 1)
            stamps.add(stamp)
            samples.append(f"{sample} <collection time>")
    assert len(stamps) == 1 and next(iter(stamps)).isdigit(), stamps
    return "\n".join(out + sorted(samples)) + "\n"


# The run ---------------------------------------------------------------------------------------


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    proc = tmp_path / "proc"
    proc_tree(proc)
    metrics, logs = MemoryExporter(), MemoryLogExporter()
    with KubeAPIServer() as api:
        api_pods(api)
        monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kubeconfig"))
        config = parse({
            "address": "127.0.0.1:0", "nodeName": NODE, "clusterName": "golden",
            "procRoot": str(proc), "netnsDir": str(tmp_path / "no-netns"),
            "cgroupRoot": str(FIXTURES / "pods" / "cgroup" / "v2"), "sysRoot": str(tmp_path / "no-sys"),
            "metrics": {"probes": [{"name": n} for n in METRIC_PROBES],
                        "additionalLabels": ["app=${labels:app}", "tier=t_${labels:tier}"]},
            "event": {"probes": [{"name": n} for n in REPLAYS], "sinks": [{"name": "file", "args": {"path": str(tmp_path / "events.jsonl")}}]},
            "eventStream": {"path": str(tmp_path / "events.sock")},
        }, "golden", environ={})
        agent = Agent(config, metric_exporter=metrics, log_exporters=[logs], registry=registry())
        try:
            agent.open()
            assert agent.pods.wait_synced(15), agent.pods.status()
            agent.cycle()
            shutil.copytree(GOLDEN / "later", proc, dirs_exist_ok=True)
            # As the event pump would; a probe in both metrics and events has two runs, one probe.
            for probe in {id(run.probe): run.probe for run in agent.runtime.runs}.values():
                if isinstance(probe, RingBufferReplay):
                    probe.consume()
            agent.events.flush()
            agent.cycle()
            assert agent.compat is not None
            compat = agent.compat.render()[2]
            states = {r.name: r.state.value for r in agent.runtime.runs}
        finally:
            agent.stop()
    assert set(states.values()) == {"running"}, states
    assert len(metrics.requests) == 3  # two cycles and the final export at stop
    return {
        "metrics.json": json.dumps(metrics_json(metrics.requests[1]), indent=1, sort_keys=True) + "\n",
        "logs.json": json.dumps(logs_json(logs.requests), indent=1, sort_keys=True) + "\n",
        "compat.txt": compat_text(compat),
    }


def test_whole_pipeline_matches_the_golden_files(outputs: dict[str, str], request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--update-golden"):
        for name, text in outputs.items():
            (GOLDEN / name).write_text(text)
    for name, text in outputs.items():
        want = (GOLDEN / name).read_text()
        assert text == want, f"{name} differs from tests/fixtures/golden/{name} (make golden rewrites it)"
