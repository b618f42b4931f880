# SPDX-License-Identifier: Apache-2.0
"""What an instrument is (OTLP name, kind, unit, description, attribute keys, the key its source
calls it, the upstream KubeSkoop compat name), the helpers probes declare theirs with, and the
agent's own health instruments.

Each probe declares its instruments in its own module (``probes/<name>.py``, ``INSTRUMENTS``);
the table of every instrument is derived from the registry (``probes/__init__.py``), and the docs
are generated from it. OTLP names are ``kubeskoop.<probe>.<metric>`` with the upstream
metric words, so the Prometheus form of an OTLP name is the upstream name plus the usual unit and
``_total`` suffixes. Kernel counters are monotonic sums (upstream exports them as gauges); levels
are up-down counters or gauges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from otel_kubeskoop.vocabulary import attributes as A


class InstrumentKind(enum.Enum):
    COUNTER = "counter"  # monotonic cumulative sum (observable counter)
    UPDOWN = "updowncounter"  # non-monotonic sum: a count of things that exist now
    GAUGE = "gauge"  # a setting or a last measurement
    HISTOGRAM = "histogram"  # a distribution the kernel keeps in buckets (cumulative counts)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    key: str = ""  # what the source calls the value (e.g. the /proc/net/snmp column)
    compat: str | None = None  # upstream Prometheus name, None when upstream has none
    # Attribute values left out of the compat series (upstream netdev skips lo).
    compat_exclude: tuple[tuple[str, str], ...] = ()
    # Attributes kept as compat labels, (attribute key, upstream label name); the compat series
    # sums over every other attribute (rdma keeps device, type and port).
    compat_labels: tuple[tuple[str, str], ...] = ()
    # False: the compat endpoint's view only (upstream's per-tuple series), never sent over OTLP.
    otlp: bool = True

    @property
    def probe(self) -> str:
        return self.name.split(".")[1]


C, U, G, H = InstrumentKind.COUNTER, InstrumentKind.UPDOWN, InstrumentKind.GAUGE, InstrumentKind.HISTOGRAM


def mib(probe: str, rows: list[tuple[str, InstrumentKind, str, str]]) -> tuple[InstrumentSpec, ...]:
    """Instruments of a probe whose metric word is its source key lower-cased (upstream's rule)."""
    return tuple(
        InstrumentSpec(
            name=f"kubeskoop.{probe}.{key.lower()}",
            kind=kind,
            unit=unit,
            description=desc,
            key=key,
            compat=f"kubeskoop_{probe}_{key.lower()}",
        )
        for key, kind, unit, desc in rows
    )


# Upstream leaves the loopback interface out of its per-interface series (netdev, qdisc).
NO_LOOPBACK = ((A.NETWORK_INTERFACE_NAME, "lo"),)

# Upstream's tuple labels (flow, packetloss, tcpretrans): the compat endpoint adds each address's
# pod or node (telemetry/compat_tuples.py).
TUPLE_COMPAT = ((A.NETWORK_TRANSPORT, "protocol"), (A.SOURCE_ADDRESS, "src"),
                (A.DESTINATION_ADDRESS, "dst"), (A.SOURCE_PORT, "sport"), (A.DESTINATION_PORT, "dport"))

# The agent's own health, on the node resource.
_P = (A.PROBE,)
AGENT_PROBE_DURATION = InstrumentSpec(
    "kubeskoop.agent.probe.duration", G, "s", "Wall time of the probe's last collection", _P)
AGENT_PROBE_ERRORS = InstrumentSpec(
    "kubeskoop.agent.probe.errors", C, "{error}",
    "Probe collections or parses that failed, by error type", (A.PROBE, A.ERROR_TYPE))
AGENT_PROBE_STATE = InstrumentSpec(
    "kubeskoop.agent.probe.state", G, "1",
    "1 for the probe's current state (running, unavailable, failed, stopped)", (A.PROBE, A.PROBE_STATE))
AGENT_NETNS_COUNT = InstrumentSpec(
    "kubeskoop.agent.netns.count", U, "{namespace}", "Network namespaces the agent watches")
# Namespaces past the number the file-descriptor limit can hold (otel_kubeskoop/limits.py).
AGENT_NETNS_LEFT_OUT = InstrumentSpec(
    "kubeskoop.agent.netns.left_out", U, "{namespace}",
    "Network namespaces found but not watched: more than the file-descriptor limit can hold")
# Caps on what the agent tracks, each named by where it holds: the OTLP pipeline's resources and
# series (telemetry/pipeline.py), the compat endpoint's tuple series (telemetry/compat_tuples.py),
# the resource directory's resources (identity/directory.py) and the namespaces the fd limit holds
# (topology/netns_discovery.py, otel_kubeskoop/limits.py).
CAP_METRIC_RESOURCES = "metrics.resources"
CAP_METRIC_SERIES = "metrics.series"
CAP_COMPAT_TUPLE_SERIES = "compat.tuple_series"
CAP_DIRECTORY_RESOURCES = "directory.resources"
CAP_NETNS_FD_LIMIT = "netns.fd_limit"
CAP_SERVICE_ADDRESSES = "services.addresses"  # ClusterIPs held for naming peers (topology/services.py)
CAPS = (CAP_METRIC_RESOURCES, CAP_METRIC_SERIES, CAP_COMPAT_TUPLE_SERIES, CAP_DIRECTORY_RESOURCES, CAP_NETNS_FD_LIMIT,
        CAP_SERVICE_ADDRESSES)
AGENT_OVERFLOW = InstrumentSpec(
    "kubeskoop.agent.overflow", C, "{item}",
    "Items left out because a cap on tracked state was full, summed over cycles, by cap: samples "
    "(metrics.resources, metrics.series), tuples folded into the overflow series (compat.tuple_series), "
    "resource lookups not kept (directory.resources), namespaces not watched (netns.fd_limit), Service "
    "addresses not named (services.addresses); from the probes that keep per-peer figures, peer addresses "
    "folded into the overflow remote (<probe>.remotes: tcprtt.remotes, tcpconnect.remotes)", (A.CAP,))
AGENT_CYCLE_DURATION = InstrumentSpec(
    "kubeskoop.agent.cycle.duration", G, "s", "Wall time of the last whole collection cycle")
AGENT_EXPORT_FAILURES = InstrumentSpec(
    "kubeskoop.agent.export.failures", C, "{request}", "OTLP export calls that failed", (A.SIGNAL,))
# Events: delivered + lost (by reason) = what the kernel saw. Kernel-side reasons (rate_limited,
# ring_buffer_full) come from the probe's own counters; decode_error and export_queue_full from
# the agent.
AGENT_EVENTS_DELIVERED = InstrumentSpec(
    "kubeskoop.agent.events.delivered", C, "{event}", "Events handed to the event sinks", (A.PROBE,))
AGENT_EVENTS_LOST = InstrumentSpec(
    "kubeskoop.agent.events.lost", C, "{event}",
    "Events not delivered, by reason: rate_limited, ring_buffer_full, socket_buffer_full, "
    "decode_error, export_queue_full",
    (A.PROBE, A.LOSS_REASON))
# What each BPF program costs (config bpfStats.enabled: the kernel's BPF_ENABLE_STATS).
AGENT_BPF_RUNS = InstrumentSpec(
    "kubeskoop.agent.bpf.program.runs", C, "{run}", "Times the probe's BPF program ran", (A.PROBE, A.BPF_PROGRAM))
AGENT_BPF_TIME = InstrumentSpec(
    "kubeskoop.agent.bpf.program.time", C, "s", "CPU time spent in the probe's BPF program",
    (A.PROBE, A.BPF_PROGRAM))
# Runs of a probe's BPF program the kernel skipped because it was already running on that CPU
# (read whether bpfStats is on or not, otel_kubeskoop/bpf/stats.py): what they would have counted is lost.
AGENT_BPF_RECURSION_MISSES = InstrumentSpec(
    "kubeskoop.agent.bpf.program.recursion_misses", C, "{run}",
    "Runs of the probe's BPF program the kernel skipped because the program was already running on "
    "that CPU (what those runs would have counted or sent is lost)", (A.PROBE, A.BPF_PROGRAM))
# A BPF probe's counter map was full: increments that found no room (the probe reports them).
AGENT_BPF_MAP_FULL = InstrumentSpec(
    "kubeskoop.agent.bpf.map.full", C, "{update}",
    "Kernel counter or histogram updates refused because the probe's BPF map was full",
    (A.PROBE, A.BPF_MAP))
# A latency probe's in-flight table (start records) gave a record's slot to another key before
# the record's end point: that interval is lost (counted in the kernel, latency.bpf.h).
AGENT_BPF_INFLIGHT_EVICTED = InstrumentSpec(
    "kubeskoop.agent.bpf.inflight.evicted", C, "{entry}",
    "Start records a latency probe's in-flight table evicted before their end point",
    (A.PROBE, A.BPF_MAP))
# A probe's LRU map (flow) evicted keys to make room: what they counted since the last read is lost.
AGENT_BPF_MAP_EVICTED = InstrumentSpec(
    "kubeskoop.agent.bpf.map.evicted", C, "{entry}",
    "Keys a probe's BPF LRU map evicted to make room for new ones (their counts since the last "
    "collection are lost)", (A.PROBE, A.BPF_MAP))
# Config reloads (reload.py), by result: applied, partial (a probe failed to start or a setting
# needs a restart), unchanged, failed (the new config is invalid; the old one stays).
AGENT_CONFIG_RELOADS = InstrumentSpec(
    "kubeskoop.agent.config.reloads", C, "{reload}", "Config reloads, by result", (A.RELOAD_RESULT,))
# The live event stream to local clients (telemetry/stream.py).
AGENT_STREAM_CLIENTS = InstrumentSpec(
    "kubeskoop.agent.event_stream.clients", U, "{client}", "Clients following the live event stream")
AGENT_STREAM_DROPPED = InstrumentSpec(
    "kubeskoop.agent.event_stream.dropped", C, "{event}",
    "Events a live stream client's full queue had no room for (the client was told)")
AGENT = (AGENT_CONFIG_RELOADS, AGENT_STREAM_CLIENTS, AGENT_STREAM_DROPPED, AGENT_BPF_MAP_EVICTED, AGENT_BPF_INFLIGHT_EVICTED, AGENT_BPF_MAP_FULL, AGENT_BPF_RUNS, AGENT_BPF_TIME, AGENT_BPF_RECURSION_MISSES, AGENT_EVENTS_DELIVERED, AGENT_EVENTS_LOST, AGENT_PROBE_DURATION, AGENT_PROBE_ERRORS, AGENT_PROBE_STATE, AGENT_NETNS_COUNT,
         AGENT_NETNS_LEFT_OUT, AGENT_OVERFLOW, AGENT_CYCLE_DURATION, AGENT_EXPORT_FAILURES)
