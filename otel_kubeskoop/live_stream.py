# SPDX-License-Identifier: Apache-2.0
"""The agent's side of ``watch`` and ``top``: the live event stream built from the config, and the
per-cycle summary ``top`` shows (one row per resource: a pod, a namespace no pod is known for, or
the node), made only while a ``top`` client is connected.

The summary carries the kernel's cumulative values; ``top`` turns two cycles into rates, so a
client that joins late or misses a cycle still shows correct rates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any

from otel_kubeskoop.config import Config
from otel_kubeskoop.identity.directory import ResourceDirectory
from otel_kubeskoop.identity.keys import NetnsKey, NodeKey, ResourceKey
from otel_kubeskoop.probe import Histogram, Sample
from otel_kubeskoop.probes import REGISTRY
from otel_kubeskoop.telemetry.events import EventEmitter
from otel_kubeskoop.telemetry.stream import EventStream
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec


def _spec(probe: str, word: str) -> InstrumentSpec:
    name = f"kubeskoop.{probe}.{word}"
    return next(i for i in REGISTRY[probe].instruments if i.name == name)


DROPS = _spec("packetloss", "total")
DROP_REASON = DROPS.attributes[0]  # kubeskoop.drop.reason
# Summary column -> the counter it sums (the kernel's own names: RetransSegs, OutRsts, ListenOverflows).
COUNTERS = {
    "retrans": _spec("tcp", "retranssegs"),
    "resets": _spec("tcp", "outrsts"),
    "listen_overflows": _spec("tcpext", "listenoverflows"),
}
CONNTRACK = _spec("conntrack", "entries")
SOCKET_LATENCY = _spec("socketlatency", "duration")
READ = "receive"  # socketlatency's network.io.direction of reads


def event_stream(config: Config, emitter: EventEmitter, directory: ResourceDirectory) -> EventStream | None:
    section = config.raw.event_stream
    if not section.enabled:
        return None
    return EventStream(section.path, emitter, partial(summary, directory=directory),
                       section.max_clients, section.client_queue)


def _who(key: ResourceKey, directory: ResourceDirectory) -> dict[str, Any]:
    attrs = directory.resource(key).attributes
    out: dict[str, Any] = {"namespace": attrs.get(A.K8S_NAMESPACE_NAME), "pod": attrs.get(A.K8S_POD_NAME)}
    if isinstance(key, NodeKey):
        out["name"] = "(node)"
    elif isinstance(key, NetnsKey):
        out["netns"] = key.inode
        out["name"] = attrs.get(A.NETNS_NAME) or f"netns:{key.inode}"
    return out


def summary(groups: Mapping[ResourceKey, list[Sample]], directory: ResourceDirectory) -> dict[str, Any]:
    """One row per resource with any of the summary's series, and which columns the probes that
    run give at all (a column no probe feeds is shown as such, not as zero)."""
    rows = []
    seen: set[str] = set()
    for key, samples in groups.items():
        row: dict[str, Any] = {}
        drops: Counter[str] = Counter()
        for s in samples:
            spec = s.instrument
            if spec is DROPS:
                drops[str(dict(s.attributes).get(DROP_REASON, ""))] += int(s.value)  # type: ignore[arg-type]
            elif spec is CONNTRACK:
                row["conntrack"] = s.value
            elif spec is SOCKET_LATENCY and isinstance(s.value, Histogram) and dict(s.attributes).get(A.NETWORK_IO_DIRECTION) == READ:
                row["read_latency"] = {"bounds": list(s.value.bounds), "counts": list(s.value.counts)}
            else:
                for column, counter in COUNTERS.items():
                    if spec is counter:
                        row[column] = row.get(column, 0) + s.value
        if drops:
            row["drops"] = dict(drops)
        if not row:
            continue
        seen.update(row)
        rows.append({**_who(key, directory), **row})
    return {"rows": rows, "columns": sorted(seen)}
