# SPDX-License-Identifier: Apache-2.0
"""Apply a new config to a running agent: the difference, not a restart.

Probes: the runtime starts the added ones, stops the removed ones and restarts those whose
arguments changed (``runtime.ProbeRuntime.apply``); the others are not touched. Settings that
apply live: the interval, ``debugMode``, ``metrics.additionalLabels``, the event sinks, the OTLP
endpoint, protocol, headers and timeout, ``compat``, ``bpfStats``, ``reload.http``,
``shutdownTimeout``. The settings that cannot (:data:`NOT_LIVE`, :data:`NOT_LIVE_RELOAD`) keep
their old value, and the reload says which and why.
An eBPF probe's event rate limit (``eventRate``, ``eventBurst``) is fixed when its program is
loaded, so changing it restarts that probe.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otel_kubeskoop import outputs
from otel_kubeskoop.config import Config
from otel_kubeskoop.runtime import ProbeChanges
from otel_kubeskoop.telemetry.compat import CompatEndpoint
from otel_kubeskoop.telemetry.exporters import ExporterError
from otel_kubeskoop.telemetry.pipeline import MetricPipeline

if TYPE_CHECKING:
    from otel_kubeskoop.agent_parts import AgentParts

log = logging.getLogger(__name__)

# FileConfig field -> (the key as written, why it needs a restart).
NOT_LIVE: dict[str, tuple[str, str]] = {
    "address": ("address", "the HTTP server's socket is bound at start"),
    "port": ("port", "the HTTP server's socket is bound at start"),
    "node_name": ("nodeName", "every resource's identity is fixed at start"),
    "cluster_name": ("clusterName", "every resource's identity is fixed at start"),
    "proc_root": ("procRoot", "namespace discovery and the probes' readers are built at start"),
    "netns_dir": ("netnsDir", "namespace discovery is built at start"),
    "cgroup_root": ("cgroupRoot", "the pod process scan is built at start"),
    "sys_root": ("sysRoot", "the probes' readers are built at start"),
    "event_stream": ("eventStream", "the stream's socket is bound at start"),
}
# ReloadSection field -> the key as written; the watch (with its debounce) is set up at start.
NOT_LIVE_RELOAD = {"watch": "reload.watch", "debounce": "reload.debounce"}
WATCH_SET_UP = "the watch is set up at start"
# CompatSection field -> the key as written (each change builds a new compat endpoint).
COMPAT_KEYS = {"enabled": "compat.enabled", "max_tuple_series": "compat.maxTupleSeries"}


@dataclass
class Applied:
    """What one reload changed."""

    probes: ProbeChanges = field(default_factory=ProbeChanges)
    settings: list[str] = field(default_factory=list)  # keys applied live
    not_applied: dict[str, str] = field(default_factory=dict)  # key -> why it needs a restart

    def changed(self) -> bool:
        return bool(self.probes or self.settings)

    def as_dict(self) -> dict[str, Any]:
        both = {**dataclasses.asdict(self.probes), "settings": self.settings, "not_applied": self.not_applied}
        return {k: v for k, v in both.items() if v}


def keep_not_live(old: Config, new: Config) -> tuple[Config, dict[str, str]]:
    """``new`` with the settings that cannot change live kept as in ``old``, and those named."""
    keep: dict[str, Any] = {}
    why: dict[str, str] = {}
    for name, (key, reason) in NOT_LIVE.items():
        if getattr(old.raw, name) != getattr(new.raw, name):
            keep[name] = getattr(old.raw, name)
            why[key] = reason
    reload_kept = {name: getattr(old.raw.reload, name) for name in NOT_LIVE_RELOAD
                   if getattr(old.raw.reload, name) != getattr(new.raw.reload, name)}
    if reload_kept:
        keep["reload"] = new.raw.reload.model_copy(update=reload_kept)
        why.update({NOT_LIVE_RELOAD[name]: WATCH_SET_UP for name in reload_kept})
    if not keep:
        return new, why
    raw = new.raw.model_copy(update=keep)
    return dataclasses.replace(new, raw=raw, node_name=old.node_name, cluster_name=old.cluster_name,
                               address=old.address), why


def apply(agent: AgentParts, new: Config) -> Applied:
    """Make ``new`` the agent's config. Called with the agent's cycle lock held."""
    old = agent.config
    new, not_applied = keep_not_live(old, new)
    done = Applied(agent.runtime.apply(new.probes), not_applied=not_applied)
    if old.interval != new.interval:
        done.settings.append("otlp.interval")
    if old.debug != new.debug:
        logging.getLogger("otel_kubeskoop").setLevel(logging.DEBUG if new.debug else logging.INFO)
        done.settings.append("debugMode")
    if old.additional_labels != new.additional_labels:
        agent.directory.set_additional_labels(new.additional_labels)
        done.settings.append("metrics.additionalLabels")
    if old.raw.bpf_stats != new.raw.bpf_stats:
        reason = agent.runtime.set_bpf_stats(new.raw.bpf_stats.enabled)
        if reason:
            done.not_applied["bpfStats.enabled"] = reason
        else:
            done.settings.append("bpfStats.enabled")
    if old.raw.reload.http != new.raw.reload.http:
        done.settings.append("reload.http")
    if old.shutdown_timeout != new.shutdown_timeout:  # read when the agent stops
        done.settings.append("shutdownTimeout")
    _outputs(agent, old, new, done)
    if (old.raw.compat, old.additional_labels) != (new.raw.compat, new.additional_labels):
        agent.compat = (CompatEndpoint(new.node_name, [name for name, _ in new.additional_labels], agent.directory,
                                       max_tuple_series=new.raw.compat.max_tuple_series)
                        if new.raw.compat.enabled and new.address else None)
        done.settings += [key for name, key in COMPAT_KEYS.items()
                          if getattr(old.raw.compat, name) != getattr(new.raw.compat, name)]
    agent.config = new
    return done


def _outputs(agent: AgentParts, old: Config, new: Config, done: Applied) -> None:
    """The OTLP exporters and the event sinks. New outputs that cannot be built (a gRPC endpoint
    without the gRPC package, a sink's file that cannot be opened) leave the old ones in place,
    and the reload says why."""
    keys = [key for key, changed in (("otlp", old.otlp != new.otlp), ("event.sinks", old.sinks != new.sinks)) if changed]
    if not keys:
        return
    try:
        exporter = outputs.metric_exporter(new) if "otlp" in keys else None
        log_exporters, line_sinks = outputs.event_outputs(new)
    except (ExporterError, OSError) as exc:
        done.not_applied.update({key: f"cannot build the new outputs: {exc}" for key in keys})
        return
    if "otlp" in keys:
        if agent.pipeline is not None and exporter is not None:
            agent.pipeline.replace_exporter(exporter)
        elif exporter is not None:
            agent.pipeline = MetricPipeline(exporter, agent.directory)
        elif agent.pipeline is not None:
            agent.pipeline.export()  # what it has, before it goes
            agent.pipeline.shutdown()
            agent.pipeline = None
    agent.events.replace_outputs(log_exporters, line_sinks)
    done.settings += keys
