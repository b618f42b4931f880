# SPDX-License-Identifier: Apache-2.0
"""softirq: how long softirqs wait to run and how long they run, per type and CPU (node scope).

The interval of each stage, between two kernel tracepoints (``bpf/softirq.bpf.c``):

- ``delay``: ``irq:softirq_raise`` (the first raise that set the softirq pending on a CPU) ->
  ``irq:softirq_entry`` (its handler starts on that CPU, from an interrupt exit, a
  ``local_bh_enable()`` or ksoftirqd);
- ``runtime``: ``irq:softirq_entry`` -> ``irq:softirq_exit``: one run of the handler.

A log2 histogram per (type, CPU, stage) is exported as ``kubeskoop.softirq.duration``
(seconds, buckets 2^(i+1) ns) with ``cpu.logical_number``, ``kubeskoop.softirq.type`` and
``kubeskoop.latency.stage`` on the node resource: softirqs belong to no pod. Upstream's four
counters (``kubeskoop_softirq_schedslow`` >10 ms and ``..._schedslow100ms`` >100 ms for the delay,
``excuteslow``/``excuteslow100ms`` for the run time, upstream's spelling) are counted in the
kernel per (type, CPU); upstream's label set is ``k8s_node, softirq_type`` (summed over CPUs).

``softirq-types`` (upstream's argument) picks the types: a list drawn from ``hi, timer, net_tx,
net_rx, block, irq_poll, tasklet, sched, hrtimer, rcu`` (default ``[net_rx]``; an empty list
means the default, as upstream); it becomes a bit mask in the kernel, so other types cost one
array lookup per tracepoint hit.

Events (``event.probes``): upstream's ``SOFTIRQ_SCHED_SLOW`` / ``SOFTIRQ_EXCUTE_SLOW`` above
``thresholdMs`` (default 10 ms) and ``SOFTIRQ_SCHED_100MS`` / ``SOFTIRQ_EXCUTE_100MS`` above
100 ms, with the type, CPU (upstream never filled it), latency, and the task current on the CPU.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.generated import softirq as contract
from otel_kubeskoop.bpf.generated.softirq import SoftirqEvent, SoftirqEventType, SoftirqStage
from otel_kubeskoop.bpf.records import DecodeError, decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import bpf_requires
from otel_kubeskoop.probes._decode import record_event
from otel_kubeskoop.probes._latency import (
    HISTS_MAP,
    Latency,
    LatencyArgs,
    LatencyProbe,
    histogram,
    seconds,
)
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

SOFTIRQ_TYPE = "kubeskoop.softirq.type"  # hi, timer, net_tx, net_rx, block, ... (upstream names)

# Upstream labels softirq series with the type (summed over CPUs and stages of a counter).
_SOFTIRQ_COMPAT = ((SOFTIRQ_TYPE, "softirq_type"),)
_SOFTIRQ = (A.CPU_LOGICAL_NUMBER, SOFTIRQ_TYPE)
SOFTIRQ_DURATION = InstrumentSpec(
    "kubeskoop.softirq.duration", H, "s",
    "Softirq latency per type and CPU, by stage: delay (irq:softirq_raise to irq:softirq_entry, "
    "raised but not yet running) and runtime (irq:softirq_entry to irq:softirq_exit)",
    (*_SOFTIRQ, A.LATENCY_STAGE))
SOFTIRQ_SCHEDSLOW = InstrumentSpec(
    "kubeskoop.softirq.schedslow", C, "{softirq}",
    "Softirqs that waited more than 10 ms from raise to entry", _SOFTIRQ,
    key="delay.0", compat="kubeskoop_softirq_schedslow",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_SCHEDSLOW100MS = InstrumentSpec(
    "kubeskoop.softirq.schedslow100ms", C, "{softirq}",
    "Softirqs that waited more than 100 ms from raise to entry", _SOFTIRQ,
    key="delay.1", compat="kubeskoop_softirq_schedslow100ms",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_EXCUTESLOW = InstrumentSpec(
    "kubeskoop.softirq.excuteslow", C, "{softirq}",
    "Softirq handler runs longer than 10 ms (upstream's spelling)", _SOFTIRQ,
    key="runtime.0", compat="kubeskoop_softirq_excuteslow",
    compat_labels=_SOFTIRQ_COMPAT)
SOFTIRQ_EXCUTESLOW100MS = InstrumentSpec(
    "kubeskoop.softirq.excuteslow100ms", C, "{softirq}",
    "Softirq handler runs longer than 100 ms (upstream's spelling)", _SOFTIRQ,
    key="runtime.1", compat="kubeskoop_softirq_excuteslow100ms",
    compat_labels=_SOFTIRQ_COMPAT)
INSTRUMENTS = (SOFTIRQ_DURATION, SOFTIRQ_SCHEDSLOW, SOFTIRQ_SCHEDSLOW100MS, SOFTIRQ_EXCUTESLOW,
           SOFTIRQ_EXCUTESLOW100MS)

_EVENT_ATTRIBUTES = (SOFTIRQ_TYPE, A.CPU_LOGICAL_NUMBER, A.LATENCY, A.LATENCY_STAGE, A.PROCESS_PID,
            A.PROCESS_COMMAND)
SOFTIRQ_SCHED_SLOW = EventSpec(
    "kubeskoop.softirq.sched_slow", "SOFTIRQ_SCHED_SLOW",
    "A softirq waited longer than the threshold (and at most 100 ms) from raise to entry", _EVENT_ATTRIBUTES)
SOFTIRQ_SCHED_100MS = EventSpec(
    "kubeskoop.softirq.sched_100ms", "SOFTIRQ_SCHED_100MS",
    "A softirq waited longer than 100 ms from raise to entry", _EVENT_ATTRIBUTES)
SOFTIRQ_EXECUTE_SLOW = EventSpec(
    "kubeskoop.softirq.execute_slow", "SOFTIRQ_EXCUTE_SLOW",
    "A softirq handler ran longer than the threshold (and at most 100 ms)", _EVENT_ATTRIBUTES)
SOFTIRQ_EXECUTE_100MS = EventSpec(
    "kubeskoop.softirq.execute_100ms", "SOFTIRQ_EXCUTE_100MS",
    "A softirq handler ran longer than 100 ms", _EVENT_ATTRIBUTES)
EVENTS = (SOFTIRQ_SCHED_SLOW, SOFTIRQ_SCHED_100MS, SOFTIRQ_EXECUTE_SLOW, SOFTIRQ_EXECUTE_100MS)


#: Softirq types by number: include/linux/interrupt.h (HI_SOFTIRQ = 0 ... RCU_SOFTIRQ = 9), names
#: as upstream's softirq-types argument and /proc/softirqs spell them.
TYPES = ("hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu")
DEFAULT_TYPES = ("net_rx",)


#: kubeskoop.latency.stage values
STAGES = {SoftirqStage.SOFTIRQ_STAGE_SCHED: "delay", SoftirqStage.SOFTIRQ_STAGE_EXCUTE: "runtime"}
_SLOW = {
    SoftirqStage.SOFTIRQ_STAGE_SCHED: (SOFTIRQ_SCHEDSLOW, SOFTIRQ_SCHEDSLOW100MS),
    SoftirqStage.SOFTIRQ_STAGE_EXCUTE: (SOFTIRQ_EXCUTESLOW, SOFTIRQ_EXCUTESLOW100MS),
}
_EVENTS = {
    SoftirqEventType.SOFTIRQ_SCHED_SLOW: SOFTIRQ_SCHED_SLOW,
    SoftirqEventType.SOFTIRQ_SCHED_100MS: SOFTIRQ_SCHED_100MS,
    SoftirqEventType.SOFTIRQ_EXCUTE_SLOW: SOFTIRQ_EXECUTE_SLOW,
    SoftirqEventType.SOFTIRQ_EXCUTE_100MS: SOFTIRQ_EXECUTE_100MS,
}


class SoftirqArgs(LatencyArgs):
    """``softirq-types`` as upstream (default ``[net_rx]``); ``thresholdMs`` (default 10 ms)."""

    softirq_types: tuple[str, ...] = Field(DEFAULT_TYPES, alias="softirq-types")
    threshold_ms: float = Field(10.0, alias="thresholdMs", gt=0, le=3_600_000)

    @field_validator("softirq_types", mode="before")
    @classmethod
    def _known_types(cls, value: Any) -> Any:
        if value is None:
            return DEFAULT_TYPES
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"softirq-types must be a list of softirq types (known: {', '.join(TYPES)})")
        unknown = [v for v in value if v not in TYPES]
        if unknown:
            raise ValueError(f"unknown softirq type {unknown[0]!r} (known: {', '.join(TYPES)})")
        return tuple(dict.fromkeys(value)) or DEFAULT_TYPES

    @property
    def vec_mask(self) -> int:
        mask = 0
        for name in self.softirq_types:
            mask |= 1 << TYPES.index(name)
        return mask


def softirq_type(vec: int) -> str:
    return TYPES[vec] if 0 <= vec < len(TYPES) else str(vec)


def decode_softirq(raw: bytes, clock_offset_ns: int = 0) -> Event:
    """One ``struct softirq_event`` as an Event (node scope: netns None). Pure."""
    rec = decode_exact(SoftirqEvent, raw)
    try:
        spec = _EVENTS[SoftirqEventType(rec.hdr.type)]
        stage = SoftirqStage(rec.stage)
    except ValueError:
        raise DecodeError(f"softirq: unknown event type {rec.hdr.type} or stage {rec.stage}") from None
    return record_event(spec, rec.hdr, (
        (SOFTIRQ_TYPE, softirq_type(rec.vec)),
        (A.CPU_LOGICAL_NUMBER, rec.cpu),
        (A.LATENCY, seconds(rec.latency_ns)),
        (A.LATENCY_STAGE, STAGES[stage]),
        (A.PROCESS_PID, rec.pid),
        (A.PROCESS_COMMAND, rec.comm.decode(errors="replace")),
    ), clock_offset_ns, node_scope=True)


def samples_of(key: Any, value: Any, netns: int | None) -> list[Sample]:
    """The samples of one ``hists`` entry, all the node's: its histogram and upstream's two
    counters of its stage."""
    try:
        stage = SoftirqStage(key.stage)
    except ValueError:
        return []
    base = ((A.CPU_LOGICAL_NUMBER, key.cpu), (SOFTIRQ_TYPE, softirq_type(key.vec)))
    slow, slow100 = _SLOW[stage]
    return [
        Sample(SOFTIRQ_DURATION, histogram(value), None, (*base, (A.LATENCY_STAGE, STAGES[stage]))),
        Sample(slow, value.slow[0], None, base),
        Sample(slow100, value.slow[1], None, base),
    ]


def hist_slots(args: SoftirqArgs) -> int:
    """Slots for one histogram per (measured type, possible CPU, stage): a power of two at least
    twice that, so that each key finds room among its first slots."""
    cpus = libbpf.lib().libbpf_num_possible_cpus()
    keys = 2 * bin(args.vec_mask).count("1") * max(cpus, 1)
    return max(64, 1 << (2 * keys - 1).bit_length())


def settings(args: SoftirqArgs) -> dict[str, int]:
    """The ``const volatile`` settings beyond the threshold: the types measured, the table's mask."""
    return {"targ_vec_mask": args.vec_mask, "hists_mask": hist_slots(args) - 1}


#: the probe: its object (no in-flight table: a per-CPU array), samples and events, settings and
#: table size from the types measured, node scope
TABLE = Latency(contract.OBJECT, SoftirqArgs, None, samples_of, decode_softirq, settings=settings,
                sizes=lambda args: {HISTS_MAP: hist_slots(args)}, node_scope=True)


class SoftirqProbe(LatencyProbe):
    TABLE = TABLE


SPEC = ProbeSpec(
    name="softirq",
    summary="Softirq scheduling delay (raise to entry) and run time (entry to exit) per type and "
            "CPU, as histograms (node scope)",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NODE,
    overhead=Overhead.HIGH,
    overhead_note="one per-CPU array lookup per softirq raise, entry and exit on every CPU (tens "
                  "of thousands a second on a busy node), plus an update of this CPU's histogram "
                  "per measured type's entry and exit; series scale with CPUs x types",
    default_enabled=False,
    factory=SoftirqProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=SoftirqArgs,
    requires=bpf_requires("tracepoints irq:softirq_raise, irq:softirq_entry, irq:softirq_exit "
                          "(tp_btf, else classic)"),
)
