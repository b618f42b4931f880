# SPDX-License-Identifier: Apache-2.0
"""Write the Grafana dashboards of deploy/dashboards/ from the agent's instrument table.

Two sets, the same questions asked of two storage paths:

- ``compat/``: Prometheus scraping each agent's KubeSkoop-compatible ``/metrics`` (upstream's names
  and labels ``k8s_node``, ``k8s_namespace``, ``k8s_pod``; the node's own namespace has
  ``k8s_pod=""``). Only what that endpoint serves: no histograms, no agent health.
- ``otlp/``: the agent's OTLP metrics in Prometheus or Mimir, named as the standard
  OTLP-to-Prometheus translation names them (``otel_kubeskoop.docs.prom_name``), with the
  resource attributes as labels (``k8s_node_name``...), as the Collector of deploy/collector
  writes them.

Metric names are never written here: ``C("kubeskoop.udp.noports")`` is the compat name of that
instrument and ``O(...)`` its translated name, so a renamed instrument changes the dashboards (and
a removed one fails this script). ``make dashboards`` runs it; tests/deploy/test_dashboards.py
checks that the committed files are what it writes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from otel_kubeskoop.docs import prom_name
from otel_kubeskoop.probes import INSTRUMENTS
from otel_kubeskoop.vocabulary import attributes as A

HERE = Path(__file__).resolve().parent
RATE = "$__rate_interval"
SPECS = {spec.name: spec for spec in INSTRUMENTS}


def C(name: str) -> str:
    """The compat endpoint's name for instrument ``name``."""
    compat = SPECS[name].compat
    if compat is None:
        raise KeyError(f"{name} has no compat name")
    return compat


def O(name: str, series: str = "") -> str:  # noqa: E743 - O for OTLP, next to C
    """The translated name of instrument ``name`` (``series``: ``bucket``, ``sum``, ``count``)."""
    return prom_name(SPECS[name]) + (f"_{series}" if series else "")


def L(attribute: str) -> str:
    """The Prometheus label of an OTLP attribute."""
    return attribute.replace(".", "_")


# --- panels -----------------------------------------------------------------------------------

def target(expr: str, legend: str = "") -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def ts(title: str, *targets: dict[str, Any], unit: str = "short", description: str = "") -> dict[str, Any]:
    return {"type": "timeseries", "title": title, "description": description, "targets": list(targets),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}}


def heatmap(title: str, expr: str, description: str = "") -> dict[str, Any]:
    return {"type": "heatmap", "title": title, "description": description,
            "targets": [{**target(expr, "{{le}}"), "format": "heatmap"}],
            "options": {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1}}


def table(title: str, expr: str, description: str = "") -> dict[str, Any]:
    return {"type": "table", "title": title, "description": description,
            "targets": [{**target(expr), "instant": True, "format": "table"}]}


Row = tuple[str, list[dict[str, Any]]]


def variable(name: str, query: str, multi: bool) -> dict[str, Any]:
    var = {"name": name, "label": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
           "query": {"query": query, "refId": name}, "refresh": 2, "sort": 1}
    if multi:
        var |= {"multi": True, "includeAll": True, "allValue": ".*"}
    return var


def pod_variables(metric: str, node: str, namespace: str, pod: str, pods_only: str = "") -> list[dict[str, Any]]:
    """node, namespace and pod, each narrowing the next, from the series of ``metric``."""
    return [
        variable("node", f"label_values({metric}, {node})", multi=True),
        variable("namespace", f'label_values({metric}{{{node}=~"$node"{pods_only}}}, {namespace})', multi=True),
        variable("pod", f'label_values({metric}{{{namespace}=~"$namespace"}}, {pod})', multi=True),
    ]


def dashboard(uid: str, title: str, tags: list[str], variables: list[dict[str, Any]], rows: Iterable[Row]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, ref = 0, 0
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                       "id": len(panels) + 1, "panels": []})
        y += 1
        x = 0
        for panel in row_panels:
            width = 24 if panel["type"] == "table" else 12
            if x + width > 24:
                x, y = 0, y + 8
            for t in panel["targets"]:
                ref += 1
                t["refId"] = f"Q{ref}"
            panels.append({**panel, "id": len(panels) + 1, "gridPos": {"x": x, "y": y, "w": width, "h": 8},
                           "datasource": {"type": "prometheus", "uid": "${datasource}"}})
            x += width
        y += 8
    return {
        "uid": uid, "title": title, "tags": ["otel-kubeskoop", *tags], "editable": True, "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "timezone": "browser",
        "templating": {"list": [{"name": "datasource", "label": "datasource", "type": "datasource",
                                 "query": "prometheus"}, *variables]},
        "annotations": {"list": []}, "panels": panels,
    }


# --- compat set -------------------------------------------------------------------------------

def compat_nodes() -> dict[str, Any]:
    node = 'k8s_node="$node"'
    host = f'{node}, k8s_pod=""'
    pods = f'{node}, k8s_pod!=""'

    def rate(name: str, sel: str = host) -> str:
        return f"sum(rate({C(name)}{{{sel}}}[{RATE}]))"

    rows: list[Row] = [
        ("Drops", [
            ts("Packets dropped by the kernel (packetloss)",
               target(f"sum(rate({C('kubeskoop.packetloss.tuples')}{{{node}}}[{RATE}]))", "all"),
               target(f"sum(rate({C('kubeskoop.packetloss.netfilter.tuples')}{{{node}}}[{RATE}]))", "netfilter"), unit="pps"),
            ts("Backlog drops per CPU (softnet)", target(rate("kubeskoop.softnet.dropped"), "dropped"), unit="pps"),
            ts("Interface drops", target(rate("kubeskoop.netdev.rxdropped"), "rx host"),
               target(rate("kubeskoop.netdev.txdropped"), "tx host"),
               target(rate("kubeskoop.netdev.rxdropped", pods), "rx pods"), unit="pps"),
            ts("Conntrack drops", target(rate("kubeskoop.conntrack.drop"), "drop"),
               target(rate("kubeskoop.conntrack.insertfailed"), "insert failed"),
               target(rate("kubeskoop.conntrack.earlydrop"), "early drop"), unit="pps"),
        ]),
        ("Network devices", [
            ts("Received", target(rate("kubeskoop.netdev.rxbytes"), "host"), target(rate("kubeskoop.netdev.rxbytes", pods), "pods"), unit="Bps"),
            ts("Sent", target(rate("kubeskoop.netdev.txbytes"), "host"), target(rate("kubeskoop.netdev.txbytes", pods), "pods"), unit="Bps"),
            ts("Packets", target(rate("kubeskoop.netdev.rxpackets"), "rx"), target(rate("kubeskoop.netdev.txpackets"), "tx"), unit="pps"),
            ts("Errors", target(rate("kubeskoop.netdev.rxerrors"), "rx"), target(rate("kubeskoop.netdev.txerrors"), "tx"), unit="pps"),
            ts("Softnet packets processed", target(rate("kubeskoop.softnet.processed"), "processed"), unit="pps"),
        ]),
        ("TCP", [
            ts("Connections by state (tcpsummary)",
               *(target(f"sum({C(f'kubeskoop.tcpsummary.tcp{s}conn')}{{{host}}})", s)
                 for s in ("established", "timewait", "closewait", "synsent", "synrecv"))),
            ts("Sockets (sock)", target(f"sum({C('kubeskoop.sock.inuse')}{{{host}}})", "in use"),
               target(f"sum({C('kubeskoop.sock.orphan')}{{{host}}})", "orphan"),
               target(f"sum({C('kubeskoop.sock.tw')}{{{host}}})", "time wait")),
            ts("Retransmitted segments / sent", target(f"{rate('kubeskoop.tcp.retranssegs')} / {rate('kubeskoop.tcp.outsegs')}", "ratio"),
               unit="percentunit"),
            ts("Opens and resets", target(rate("kubeskoop.tcp.activeopens"), "active"), target(rate("kubeskoop.tcp.passiveopens"), "passive"),
               target(rate("kubeskoop.tcp.attemptfails"), "attempt fails"), target(rate("kubeskoop.tcp.outrsts"), "resets sent")),
            ts("Listen queue", target(rate("kubeskoop.tcpext.listenoverflows"), "overflows"), target(rate("kubeskoop.tcpext.listendrops"), "drops")),
            ts("Receive-side drops", target(rate("kubeskoop.tcpext.tcprcvqdrop"), "rcvq"), target(rate("kubeskoop.tcpext.tcpbacklogdrop"), "backlog"),
               target(rate("kubeskoop.tcpext.pfmemallocdrop"), "pfmemalloc"), target(rate("kubeskoop.tcpext.tcpzerowindowdrop"), "zero window")),
            ts("Retransmissions by kind", target(rate("kubeskoop.tcpext.tcpsynretrans"), "syn"), target(rate("kubeskoop.tcpext.tcpfastretrans"), "fast"),
               target(rate("kubeskoop.tcpext.tcptimeouts"), "timeouts")),
            ts("Queued bytes (tcpsummary)", target(f"sum({C('kubeskoop.tcpsummary.tcptxqueue')}{{{host}}})", "tx"),
               target(f"sum({C('kubeskoop.tcpsummary.tcprxqueue')}{{{host}}})", "rx"), unit="bytes"),
        ]),
        ("UDP and IP", [
            ts("UDP errors", target(rate("kubeskoop.udp.noports"), "no port"), target(rate("kubeskoop.udp.rcvbuferrors"), "rcvbuf"),
               target(rate("kubeskoop.udp.sndbuferrors"), "sndbuf"), target(rate("kubeskoop.udp.inerrors"), "in errors")),
            ts("IP", target(rate("kubeskoop.ip.inreceives"), "received"), target(rate("kubeskoop.ip.outrequests"), "sent"),
               target(rate("kubeskoop.ip.indiscards"), "in discards"), target(rate("kubeskoop.ip.outnoroutes"), "no route"), unit="pps"),
        ]),
        ("Conntrack and qdisc", [
            ts("Conntrack table use", target(f"sum({C('kubeskoop.conntrack.entries')}{{{host}}}) / sum({C('kubeskoop.conntrack.maxentries')}{{{host}}})", "entries / max"),
               unit="percentunit"),
            ts("Conntrack lookups", target(rate("kubeskoop.conntrack.found"), "found"), target(rate("kubeskoop.conntrack.insert"), "insert"),
               target(rate("kubeskoop.conntrack.invalid"), "invalid"), target(rate("kubeskoop.conntrack.searchrestart"), "search restart")),
            ts("Qdisc backlog", target(f"sum({C('kubeskoop.qdisc.backlog')}{{{node}}})", "bytes"), unit="bytes"),
            ts("Qdisc drops and overlimits", target(rate("kubeskoop.qdisc.drops", node), "drops"),
               target(rate("kubeskoop.qdisc.overlimits", node), "overlimits"), target(f"sum({C('kubeskoop.qdisc.qlen')}{{{node}}})", "queue length")),
        ]),
        ("Latency (threshold counters)", [
            ts("Softirq slower than the threshold", target(rate("kubeskoop.softirq.schedslow"), "scheduling"),
               target(rate("kubeskoop.softirq.excuteslow"), "execution"), target(rate("kubeskoop.softirq.schedslow100ms"), "scheduling > 100 ms"),
               target(rate("kubeskoop.softirq.excuteslow100ms"), "execution > 100 ms")),
            ts("Kernel stack slower than the threshold (kernellatency)", target(rate("kubeskoop.kernellatency.rxslow", node), "rx"),
               target(rate("kubeskoop.kernellatency.txslow", node), "tx"), target(rate("kubeskoop.kernellatency.rxslow100ms", node), "rx > 100 ms"),
               target(rate("kubeskoop.kernellatency.txslow100ms", node), "tx > 100 ms")),
            ts("Transmit waits > 100 ms (netiftxlat)", target(rate("kubeskoop.netiftxlat.qdiscslow100ms", node), "qdisc"),
               target(rate("kubeskoop.netiftxlat.netdevslow100ms", node), "driver")),
            ts("Slow socket reads and writes (socketlatency)", target(rate("kubeskoop.socketlatency.read1ms", node), "read > 1 ms"),
               target(rate("kubeskoop.socketlatency.read100ms", node), "read > 100 ms"), target(rate("kubeskoop.socketlatency.write1ms", node), "write > 1 ms"),
               target(rate("kubeskoop.socketlatency.write100ms", node), "write > 100 ms")),
            ts("virtio-net control commands (virtcmdlatency)", target(rate("kubeskoop.virtcmdlatency.latency", node), "slow"),
               target(rate("kubeskoop.virtcmdlatency.latency100ms", node), "> 100 ms")),
        ]),
        ("IPVS and RDMA", [
            ts("IPVS", target(rate("kubeskoop.ipvs.connections"), "connections"), target(rate("kubeskoop.ipvs.incomingpackets"), "in packets"),
               target(rate("kubeskoop.ipvs.outgoingpackets"), "out packets"), unit="pps"),
            ts("RDMA queue pairs and memory regions", target(f"sum by (device) ({C('kubeskoop.rdma.qp')}{{{host}}})", "{{device}} qp"),
               target(f"sum by (device) ({C('kubeskoop.rdma.mr')}{{{host}}})", "{{device}} mr")),
        ]),
        ("Agent", [
            ts("Namespaces left off /metrics (no pod)", target(f'sum(kubeskoop_agent_compat_unattributed_namespaces{{{node}}})', "namespaces")),
        ]),
    ]
    return dashboard("okp-compat-nodes", "otel-kubeskoop / nodes (Prometheus scrape)", ["compat"],
                     [variable("node", f"label_values({C('kubeskoop.netdev.rxbytes')}, k8s_node)", multi=False)], rows)


def compat_pods() -> dict[str, Any]:
    sel = 'k8s_node=~"$node", k8s_namespace=~"$namespace", k8s_pod=~"$pod"'

    def rate(name: str) -> str:
        return f"sum by (k8s_namespace, k8s_pod) (rate({C(name)}{{{sel}}}[{RATE}]))"

    def level(name: str) -> str:
        return f"sum by (k8s_namespace, k8s_pod) ({C(name)}{{{sel}}})"

    def tuple_rate(name: str, side: str, by: str = "") -> str:
        """Upstream's tuple metrics name pods only in their tuple labels: ``side`` is ``src`` or ``dst``."""
        labels = f'{side}_node=~"$node", {side}_namespace=~"$namespace", {side}_pod=~"$pod"'
        return f"sum by ({side}_namespace, {side}_pod{by}) (rate({C(name)}{{{labels}}}[{RATE}]))"

    def side(s: str) -> str:
        return f"{{{{{s}_namespace}}}}/{{{{{s}_pod}}}}"

    pod = "{{k8s_namespace}}/{{k8s_pod}}"
    rows: list[Row] = [
        ("Traffic", [
            ts("Received", target(rate("kubeskoop.netdev.rxbytes"), pod), unit="Bps"),
            ts("Sent", target(rate("kubeskoop.netdev.txbytes"), pod), unit="Bps"),
            ts("Interface drops and errors", target(rate("kubeskoop.netdev.rxdropped"), f"{pod} rx dropped"),
               target(rate("kubeskoop.netdev.txdropped"), f"{pod} tx dropped"), target(rate("kubeskoop.netdev.rxerrors"), f"{pod} rx errors")),
            table("Top talkers (flow)", f"topk(10, {tuple_rate('kubeskoop.flow.bytes', 'src', ', dst_namespace, dst_pod')})"),
            ts("Flow packets sent", target(tuple_rate("kubeskoop.flow.packets", "src"), side("src")), unit="pps"),
        ]),
        ("Drops, resets and retransmits", [
            ts("Packets to the pod dropped by the kernel", target(tuple_rate("kubeskoop.packetloss.tuples", "dst"), side("dst")),
               target(tuple_rate("kubeskoop.packetloss.netfilter.tuples", "dst"), f"{side('dst')} netfilter"), unit="pps"),
            ts("Retransmitted segments (tcpretrans)", target(tuple_rate("kubeskoop.tcpretrans.tuples", "src"), side("src"))),
            ts("Retransmitted / sent", target(f"{rate('kubeskoop.tcp.retranssegs')} / {rate('kubeskoop.tcp.outsegs')}", pod), unit="percentunit"),
            ts("Resets sent and attempts failed", target(rate("kubeskoop.tcp.outrsts"), f"{pod} resets sent"),
               target(rate("kubeskoop.tcp.attemptfails"), f"{pod} attempts failed")),
        ]),
        ("TCP", [
            ts("Connections by state", *(target(level(f"kubeskoop.tcpsummary.tcp{s}conn"), f"{pod} {s}")
                                         for s in ("established", "timewait", "closewait", "synsent", "synrecv"))),
            ts("Listen queue", target(rate("kubeskoop.tcpext.listenoverflows"), f"{pod} overflows"),
               target(rate("kubeskoop.tcpext.listendrops"), f"{pod} drops")),
            ts("Queued bytes", target(level("kubeskoop.tcpsummary.tcptxqueue"), f"{pod} tx"),
               target(level("kubeskoop.tcpsummary.tcprxqueue"), f"{pod} rx"), unit="bytes"),
            ts("Sockets", target(level("kubeskoop.sock.inuse"), f"{pod} in use"), target(level("kubeskoop.sock.tw"), f"{pod} time wait")),
        ]),
        ("UDP", [
            ts("UDP errors", target(rate("kubeskoop.udp.noports"), f"{pod} no port"), target(rate("kubeskoop.udp.rcvbuferrors"), f"{pod} rcvbuf"),
               target(rate("kubeskoop.udp.sndbuferrors"), f"{pod} sndbuf")),
            ts("UDP datagrams", target(rate("kubeskoop.udp.indatagrams"), f"{pod} in"), target(rate("kubeskoop.udp.outdatagrams"), f"{pod} out")),
        ]),
        ("Processes (fd, io)", [
            ts("Open file descriptors", target(level("kubeskoop.fd.openfd"), f"{pod} files"), target(level("kubeskoop.fd.opensocket"), f"{pod} sockets")),
            ts("I/O syscalls", target(rate("kubeskoop.io.readsyscall"), f"{pod} read"), target(rate("kubeskoop.io.writesyscall"), f"{pod} write")),
            ts("Storage I/O", target(rate("kubeskoop.io.readbytes"), f"{pod} read"), target(rate("kubeskoop.io.writebytes"), f"{pod} write"), unit="Bps"),
        ]),
    ]
    return dashboard("okp-compat-pods", "otel-kubeskoop / pods (Prometheus scrape)", ["compat"],
                     pod_variables(C("kubeskoop.netdev.rxbytes"), "k8s_node", "k8s_namespace", "k8s_pod", ', k8s_pod!=""'), rows)


# --- OTLP set ---------------------------------------------------------------------------------

NODE, NS, POD = L("k8s.node.name"), L("k8s.namespace.name"), L("k8s.pod.name")
POD_LEGEND = f"{{{{{NS}}}}}/{{{{{POD}}}}}"
SNAT = tuple(L(a) for a in ("network.transport", "source.address", "destination.address", "destination.port"))


REMOTE_LEGEND = (f"{POD_LEGEND} -> {{{{{L('kubeskoop.remote.kind')}}}}} "
                 f"{{{{{L('kubeskoop.remote.namespace')}}}}}/{{{{{L('kubeskoop.remote.name')}}}}}")
REMOTE_NOTE = ("The peer as a bounded label: a pod of this node, a Service (ClusterIP), the node, loopback, "
               "external (pods of other nodes included), or overflow past maxRemotes (docs/bpf-probes.md).")


def _by(*labels: str) -> str:
    return ", ".join(labels)


def otlp_network() -> dict[str, Any]:
    sel = f'{NODE}=~"$node", {NS}=~"$namespace", {POD}=~"$pod"'

    def rate(name: str, *by: str, extra: str = "") -> str:
        return f"sum by ({_by(*by)}) (rate({O(name)}{{{sel}{extra}}}[{RATE}]))"

    def level(name: str, *by: str) -> str:
        return f"sum by ({_by(*by)}) ({O(name)}{{{sel}}})"

    def quantile_heatmap(title: str, name: str, extra: str = "") -> dict[str, Any]:
        return heatmap(title, f"sum by (le) (rate({O(name, 'bucket')}{{{sel}{extra}}}[{RATE}]))")

    def quantile(q: float, name: str, *by: str) -> str:
        return f"histogram_quantile({q}, sum by ({_by(NS, POD, *by)}, le) (rate({O(name, 'bucket')}{{{sel}}}[{RATE}])))"

    reason, reset, retrans = L("kubeskoop.drop.reason"), L("kubeskoop.reset.type"), L("kubeskoop.retransmit.type")
    error = L("error.type")
    remote = tuple(L(a) for a in A.REMOTE)
    connect_failed = f', {error}!~"reset|aborted"'
    server, servfail, on_node = L("server.address"), f'{error}="servfail"', f'{NODE}=~"$node"'

    timeouts = rate("kubeskoop.dns.timeouts", NS, POD)

    def either(a: str, b: str) -> str:
        return f"({a} + {b}) or {a} or {b}"

    def dns_answers(extra: str = "") -> str:
        match = f", {extra}" if extra else ""
        return f"sum by ({_by(NS, POD)}) (rate({O('dns.lookup.duration', 'count')}{{{sel}{match}}}[{RATE}]))"

    rows: list[Row] = [
        ("Drops, resets and retransmits", [
            ts("Drops by reason", target(rate("kubeskoop.packetloss.total", reason), f"{{{{{reason}}}}}"), unit="pps"),
            ts("Drops in netfilter", target(rate("kubeskoop.packetloss.netfilter", NS, POD), POD_LEGEND), unit="pps"),
            ts("Resets by type", target(rate("kubeskoop.tcpreset.total", reset), f"{{{{{reset}}}}}")),
            ts("Retransmits by type", target(rate("kubeskoop.tcpretrans.total", retrans), f"{{{{{retrans}}}}}")),
            ts("Listen overflows and backlog use",
               target(rate("kubeskoop.tcpext.listenoverflows", NS, POD), f"{POD_LEGEND} overflows"),
               target(f"max by ({NS}, {POD}) ({O('kubeskoop.tcpsummary.tcplistenbacklog.utilization')}{{{sel}}})", f"{POD_LEGEND} backlog use")),
            ts("Softnet backlog drops per CPU", target(f"sum by ({L('cpu.logical_number')}) (rate({O('kubeskoop.softnet.dropped')}{{{NODE}=~\"$node\"}}[{RATE}]))",
                                                       f"cpu {{{{{L('cpu.logical_number')}}}}}"), unit="pps"),
        ]),
        ("Connections (tcpconnect, tcprtt)", [
            ts("Connect failures by cause (tcpconnect)", target(rate("kubeskoop.tcpconnect.failures", NS, POD, error),
                                                                f"{POD_LEGEND} {{{{{error}}}}}"),
               description="refused, timed_out, dropped (a SYN dropped on this node: see the failure events' "
                           "kubeskoop.drop.reason), unreachable, aborted; reset: established connections closed by a "
                           "RST received (docs/bpf-probes.md)."),
            ts("Connect failure ratio (tcpconnect)",
               target(f"{rate('kubeskoop.tcpconnect.failures', NS, POD, extra=connect_failed)} / "
                      f"{rate('kubeskoop.tcpconnect.attempts', NS, POD)}", POD_LEGEND), unit="percentunit"),
            ts("p99 connect latency (tcpconnect)", target(quantile(0.99, "kubeskoop.tcpconnect.duration"), POD_LEGEND), unit="s"),
            quantile_heatmap("Connect latency (tcpconnect)", "kubeskoop.tcpconnect.duration"),
            ts("Smoothed RTT p50 / p99 (tcprtt)", target(quantile(0.5, "kubeskoop.tcprtt.srtt"), f"{POD_LEGEND} p50"),
               target(quantile(0.99, "kubeskoop.tcprtt.srtt"), f"{POD_LEGEND} p99"), unit="s",
               description="Connections sampled while they receive, once per sampleIntervalMs each."),
            quantile_heatmap("Smoothed RTT (tcprtt)", "kubeskoop.tcprtt.srtt"),
            ts("RTT variation and RTO p99 (tcprtt)", target(quantile(0.99, "kubeskoop.tcprtt.rttvar"), f"{POD_LEGEND} rttvar"),
               target(quantile(0.99, "kubeskoop.tcprtt.rto"), f"{POD_LEGEND} rto"), unit="s"),
        ]),
        ("Connections by peer (tcpconnect, tcprtt)", [
            ts("p99 smoothed RTT by peer (tcprtt)",
               target(quantile(0.99, "kubeskoop.tcprtt.remote.srtt", *remote), REMOTE_LEGEND),
               unit="s", description=REMOTE_NOTE),
            ts("Connect failures by peer and cause (tcpconnect)",
               target(rate("kubeskoop.tcpconnect.remote.failures", NS, POD, *remote, error),
                      f"{REMOTE_LEGEND} {{{{{error}}}}}"), description=REMOTE_NOTE),
            ts("Connect attempts by peer (tcpconnect)",
               target(rate("kubeskoop.tcpconnect.remote.attempts", NS, POD, *remote), REMOTE_LEGEND),
               description=REMOTE_NOTE),
            ts("p99 connect latency by peer (tcpconnect)",
               target(quantile(0.99, "kubeskoop.tcpconnect.remote.duration", *remote), REMOTE_LEGEND),
               unit="s", description=REMOTE_NOTE),
        ]),
        ("DNS (dns)", [
            ts("DNS answers by result, and timeouts (dns)",
               target(f"sum by ({_by(NS, POD, error)}) (rate({O('dns.lookup.duration', 'count')}{{{sel}}}[{RATE}]))",
                      f"{POD_LEGEND} {{{{{error}}}}}"),
               target(rate("kubeskoop.dns.timeouts", NS, POD), f"{POD_LEGEND} timeout"),
               description="Answers by error.type (the response code; empty: NOERROR) and queries with no answer "
                           "within timeoutMs, per client pod (docs/bpf-probes.md)."),
            ts("DNS failure ratio: SERVFAIL and timeouts (dns)",
               target(f"({either(dns_answers(servfail), timeouts)}) / ({either(dns_answers(), timeouts)})", POD_LEGEND),
               unit="percentunit", description="A pod with answers or timeouts only still has a ratio (PromQL's "
                                                "sum of a missing series is empty)."),
            ts("p99 DNS latency by server (dns)",
               target(quantile(0.99, "dns.lookup.duration", server), f"{POD_LEGEND} {{{{{server}}}}}"), unit="s"),
            quantile_heatmap("DNS latency (dns)", "dns.lookup.duration"),
            ts("Slow DNS answers by server (dns)", target(rate("kubeskoop.dns.slow", NS, POD, server),
                                                          f"{POD_LEGEND} {{{{{server}}}}}"),
               description="Answers slower than the probe's slowThresholdMs."),
            ts("DNS query names, top 10 (dns, queryNames)",
               target(f"topk(10, {rate('kubeskoop.dns.names', NS, POD, L('dns.question.name'), error)})",
                      f"{POD_LEGEND} {{{{{L('dns.question.name')}}}}} {{{{{error}}}}}"),
               target(f"sum(rate({O('kubeskoop.dns.names.overflow')}{{{on_node}}}[{RATE}]))", "past maxQueryNames"),
               target(f"sum(rate({O('kubeskoop.dns.unreadable')}{{{on_node}}}[{RATE}]))", "TCP unreadable (classic tracepoints)")),
        ]),
        ("Traffic", [
            ts("Pod network I/O (semconv)", target(rate("k8s.pod.network.io", NS, POD, L("network.io.direction")),
                                                   f"{POD_LEGEND} {{{{{L('network.io.direction')}}}}}"), unit="Bps"),
            ts("Pod network errors (semconv)", target(rate("k8s.pod.network.errors", NS, POD), POD_LEGEND)),
            ts("Node network I/O (semconv)", target(f"sum by ({NODE}, {L('network.io.direction')}) (rate({O('k8s.node.network.io')}{{{NODE}=~\"$node\"}}[{RATE}]))",
                                                    f"{{{{{NODE}}}}} {{{{{L('network.io.direction')}}}}}"), unit="Bps"),
            ts("Node network errors (semconv)", target(f"sum by ({NODE}) (rate({O('k8s.node.network.errors')}{{{NODE}=~\"$node\"}}[{RATE}]))", f"{{{{{NODE}}}}}")),
            ts("Interface bytes (netdev)", target(rate("kubeskoop.netdev.rxbytes", NS, POD), f"{POD_LEGEND} rx"),
               target(rate("kubeskoop.netdev.txbytes", NS, POD), f"{POD_LEGEND} tx"), unit="Bps"),
            table("Top talkers (flow)", f"topk(10, sum by ({NS}, {POD}, {L('source.address')}, {L('destination.address')}, {L('network.transport')}) "
                                        f"(rate({O('kubeskoop.flow.bytes')}{{{sel}}}[{RATE}])))"),
            ts("Flows over the cap and interfaces watched (flow)", target(rate("kubeskoop.flow.overflow.flows", NS, POD), f"{POD_LEGEND} overflow"),
               target(level("kubeskoop.flow.interfaces", NODE), "{{" + NODE + "}} interfaces")),
            ts("Flow packets", target(rate("kubeskoop.flow.packets", NS, POD), POD_LEGEND), unit="pps"),
        ]),
        ("TCP, UDP, IP", [
            ts("Connections by state", target(level("kubeskoop.tcpsummary.tcpconn", L("network.connection.state")),
                                              f"{{{{{L('network.connection.state')}}}}}")),
            ts("Retransmitted / sent segments", target(f"{rate('kubeskoop.tcp.retranssegs', NS, POD)} / {rate('kubeskoop.tcp.outsegs', NS, POD)}",
                                                       POD_LEGEND), unit="percentunit"),
            ts("Listen backlog (connections waiting)", target(level("kubeskoop.tcpsummary.tcplistenbacklog", NS, POD), POD_LEGEND)),
            ts("Queued bytes", target(level("kubeskoop.tcpsummary.tcptxqueue", NS, POD), f"{POD_LEGEND} tx"),
               target(level("kubeskoop.tcpsummary.tcprxqueue", NS, POD), f"{POD_LEGEND} rx"), unit="bytes"),
            ts("TcpExt drops", target(rate("kubeskoop.tcpext.tcprcvqdrop", NS, POD), f"{POD_LEGEND} rcvq"),
               target(rate("kubeskoop.tcpext.tcpbacklogdrop", NS, POD), f"{POD_LEGEND} backlog"),
               target(rate("kubeskoop.tcpext.listendrops", NS, POD), f"{POD_LEGEND} listen")),
            ts("Sockets (sock)", target(level("kubeskoop.sock.inuse", NS, POD), f"{POD_LEGEND} in use"),
               target(level("kubeskoop.sock.tw", NS, POD), f"{POD_LEGEND} time wait"), target(level("kubeskoop.sock.mem", NS, POD), f"{POD_LEGEND} pages")),
            ts("UDP errors", target(rate("kubeskoop.udp.noports", NS, POD), f"{POD_LEGEND} no port"),
               target(rate("kubeskoop.udp.rcvbuferrors", NS, POD), f"{POD_LEGEND} rcvbuf")),
            ts("IP discards", target(rate("kubeskoop.ip.indiscards", NS, POD), f"{POD_LEGEND} in"),
               target(rate("kubeskoop.ip.outnoroutes", NS, POD), f"{POD_LEGEND} no route")),
        ]),
        ("Conntrack, qdisc, IPVS", [
            ts("Conntrack table use", target(f"max by ({NODE}, {NS}, {POD}) ({O('kubeskoop.conntrack.entries')}{{{sel}}}) / "
                                             f"max by ({NODE}, {NS}, {POD}) ({O('kubeskoop.conntrack.maxentries')}{{{sel}}})",
                                             f"{{{{{NODE}}}}} {POD_LEGEND}"), unit="percentunit"),
            ts("Conntrack failures", target(rate("kubeskoop.conntrack.drop", NODE), "drop"), target(rate("kubeskoop.conntrack.insertfailed", NODE), "insert failed"),
               target(rate("kubeskoop.conntrack.clashresolve", NODE), "clash resolved"), target(rate("kubeskoop.conntrack.chaintoolong", NODE), "chain too long")),
            ts("SNAT port use per destination (conntrack dumpTables)",
               target(f"topk(10, max by ({NODE}, {_by(*SNAT)}) ({O('kubeskoop.conntrack.snat.utilization')}{{{NODE}=~\"$node\"}}))",
                      "{{" + NODE + "}} " + " ".join("{{" + label + "}}" for label in SNAT)), unit="percentunit",
               description="Share of the source ports NAT picks from (snatPortRange) in use from a translated address "
                           "towards one destination; at 1 new connections there fail. Needs dumpTables: true "
                           "(docs/conntrack.md)."),
            ts("Conntrack entries per pod (conntrack dumpTables)",
               target(f"topk(10, {level('kubeskoop.conntrack.source.entries', NS, POD)})", POD_LEGEND),
               target(level("kubeskoop.conntrack.dump.skipped", NODE), "{{" + NODE + "}} not read (maxEntries)"),
               description="Entries by original source address: whose connections fill the tables. Needs "
                           "dumpTables: true (docs/conntrack.md)."),
            ts("Qdisc backlog", target(level("kubeskoop.qdisc.backlog", NS, POD, L("network.interface.name"), L("kubeskoop.qdisc.kind")),
                                       f"{POD_LEGEND} {{{{{L('network.interface.name')}}}}} {{{{{L('kubeskoop.qdisc.kind')}}}}}"), unit="bytes"),
            ts("Qdisc drops, requeues, overlimits", target(rate("kubeskoop.qdisc.drops", NS, POD), f"{POD_LEGEND} drops"),
               target(rate("kubeskoop.qdisc.requeues", NS, POD), f"{POD_LEGEND} requeues"),
               target(rate("kubeskoop.qdisc.overlimits", NS, POD), f"{POD_LEGEND} overlimits"), target(level("kubeskoop.qdisc.qlen", NS, POD), f"{POD_LEGEND} qlen")),
            ts("IPVS", target(rate("kubeskoop.ipvs.connections", NODE), "connections"), target(rate("kubeskoop.ipvs.incomingbytes", NODE), "in bytes"),
               target(rate("kubeskoop.ipvs.outgoingbytes", NODE), "out bytes")),
        ]),
        ("Latency", [
            quantile_heatmap("Socket read latency (socketlatency)", "kubeskoop.socketlatency.duration", f', {L("network.io.direction")}="receive"'),
            quantile_heatmap("Socket write latency (socketlatency)", "kubeskoop.socketlatency.duration", f', {L("network.io.direction")}="transmit"'),
            quantile_heatmap("Kernel stack latency (kernellatency)", "kubeskoop.kernellatency.duration"),
            quantile_heatmap("Transmit queue and driver latency (netiftxlat)", "kubeskoop.netiftxlat.duration"),
            heatmap("Softirq latency (softirq)", f"sum by (le) (rate({O('kubeskoop.softirq.duration', 'bucket')}{{{NODE}=~\"$node\"}}[{RATE}]))"),
            quantile_heatmap("Block I/O latency (biolatency)", "kubeskoop.biolatency.duration"),
            quantile_heatmap("virtio-net control commands (virtcmdlatency)", "kubeskoop.virtcmdlatency.duration"),
            ts("p99 socket read latency", target(f"histogram_quantile(0.99, sum by ({NS}, {POD}, le) (rate({O('kubeskoop.socketlatency.duration', 'bucket')}"
                                                 f"{{{sel}, {L('network.io.direction')}=\"receive\"}}[{RATE}])))", POD_LEGEND), unit="s"),
        ]),
        ("Processes and devices", [
            ts("Open file descriptors (fd)", target(level("kubeskoop.fd.openfd", NS, POD), f"{POD_LEGEND} files"),
               target(level("kubeskoop.fd.opensocket", NS, POD), f"{POD_LEGEND} sockets")),
            ts("Storage I/O (io)", target(rate("kubeskoop.io.readbytes", NS, POD), f"{POD_LEGEND} read"),
               target(rate("kubeskoop.io.writebytes", NS, POD), f"{POD_LEGEND} write"), unit="Bps"),
            ts("RDMA queue pairs (rdma)", target(level("kubeskoop.rdma.qp", NODE, L("kubeskoop.rdma.device.name")),
                                                 f"{{{{{NODE}}}}} {{{{{L('kubeskoop.rdma.device.name')}}}}}")),
        ]),
    ]
    return dashboard("okp-otlp-network", "otel-kubeskoop / network (OTLP)", ["otlp"],
                     pod_variables(O("kubeskoop.netdev.rxbytes"), NODE, NS, POD), rows)


def otlp_agent() -> dict[str, Any]:
    sel = f'{NODE}=~"$node"'
    probe = L("kubeskoop.probe")

    def rate(name: str, *by: str) -> str:
        return f"sum by ({_by(*by)}) (rate({O(name)}{{{sel}}}[{RATE}]))"

    rows: list[Row] = [
        ("Probes", [
            table("Probe states", f"max by ({NODE}, {probe}, {L('kubeskoop.probe.state')}) ({O('kubeskoop.agent.probe.state')}{{{sel}}}) == 1"),
            ts("Collection time per probe", target(f"max by ({probe}) ({O('kubeskoop.agent.probe.duration')}{{{sel}}})", f"{{{{{probe}}}}}"), unit="s"),
            ts("Probe errors", target(rate("kubeskoop.agent.probe.errors", probe, L("error.type")), f"{{{{{probe}}}}} {{{{{L('error.type')}}}}}")),
            ts("Cycle time and namespaces", target(f"max by ({NODE}) ({O('kubeskoop.agent.cycle.duration')}{{{sel}}})", f"{{{{{NODE}}}}} cycle"),
               target(f"max by ({NODE}) ({O('kubeskoop.agent.netns.count')}{{{sel}}})", f"{{{{{NODE}}}}} namespaces"),
               target(f"max by ({NODE}) ({O('kubeskoop.agent.netns.left_out')}{{{sel}}})", f"{{{{{NODE}}}}} namespaces left out")),
            ts("Caps on tracked state: items left out", target(rate("kubeskoop.agent.overflow", NODE, L("kubeskoop.cap")),
                                                               f"{{{{{NODE}}}}} {{{{{L('kubeskoop.cap')}}}}}"),
               description="Non-zero when a cap is full: OTLP resources or series, compat tuple series, "
                           "directory resources, or namespaces past the file-descriptor limit (docs/metrics.md)."),
        ]),
        ("Events and export", [
            ts("Events delivered", target(rate("kubeskoop.agent.events.delivered", probe), f"{{{{{probe}}}}}")),
            ts("Events lost by reason", target(rate("kubeskoop.agent.events.lost", probe, L("kubeskoop.loss.reason")),
                                               f"{{{{{probe}}}}} {{{{{L('kubeskoop.loss.reason')}}}}}")),
            ts("Export failures", target(rate("kubeskoop.agent.export.failures", NODE, L("kubeskoop.signal")), f"{{{{{NODE}}}}} {{{{{L('kubeskoop.signal')}}}}}")),
            ts("Config reloads by result", target(rate("kubeskoop.agent.config.reloads", NODE, "result"), f"{{{{{NODE}}}}} {{{{result}}}}")),
            ts("Live event stream", target(f"max by ({NODE}) ({O('kubeskoop.agent.event_stream.clients')}{{{sel}}})", f"{{{{{NODE}}}}} clients"),
               target(rate("kubeskoop.agent.event_stream.dropped", NODE), f"{{{{{NODE}}}}} dropped for slow clients")),
        ]),
        ("eBPF", [
            ts("BPF run time per program (share of a CPU)", target(rate("kubeskoop.agent.bpf.program.time", probe, L("kubeskoop.bpf.program")),
                                                                   f"{{{{{probe}}}}} {{{{{L('kubeskoop.bpf.program')}}}}}"), unit="percentunit",
               description="Needs bpfStats: {enabled: true} in the agent config."),
            ts("BPF runs per program", target(rate("kubeskoop.agent.bpf.program.runs", probe, L("kubeskoop.bpf.program")),
                                              f"{{{{{probe}}}}} {{{{{L('kubeskoop.bpf.program')}}}}}"),
               target(rate("kubeskoop.agent.bpf.program.recursion_misses", probe, L("kubeskoop.bpf.program")),
                      f"{{{{{probe}}}}} {{{{{L('kubeskoop.bpf.program')}}}}} skipped (recursion)"),
               description="Runs need bpfStats: {enabled: true}; skipped runs are counted always."),
            ts("BPF map pressure", target(rate("kubeskoop.agent.bpf.map.full", probe, L("kubeskoop.bpf.map")), "{{" + probe + "}} full"),
               target(rate("kubeskoop.agent.bpf.map.evicted", probe, L("kubeskoop.bpf.map")), "{{" + probe + "}} evicted"),
               target(rate("kubeskoop.agent.bpf.inflight.evicted", probe, L("kubeskoop.bpf.map")), "{{" + probe + "}} in-flight evicted")),
        ]),
    ]
    return dashboard("okp-otlp-agent", "otel-kubeskoop / agent health (OTLP)", ["otlp"], [
        variable("node", f"label_values({O('kubeskoop.agent.cycle.duration')}, {NODE})", multi=True)], rows)


DASHBOARDS = {
    "compat/nodes.json": compat_nodes,
    "compat/pods.json": compat_pods,
    "otlp/network.json": otlp_network,
    "otlp/agent.json": otlp_agent,
}


def render(path: str) -> str:
    return json.dumps(DASHBOARDS[path](), indent=1, sort_keys=True) + "\n"


def main(out: Path = HERE) -> None:
    for path in DASHBOARDS:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(render(path))
        print(f"wrote {out / path}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
