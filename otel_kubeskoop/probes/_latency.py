# SPDX-License-Identifier: Apache-2.0
"""What the latency probes hold besides their :class:`~otel_kubeskoop.probes._bpf.ObjectHandle`:
:class:`Histograms` (netiftxlat, softirq, biolatency, virtcmdlatency, and with :class:`Directions`
kernellatency and socketlatency). A probe whose samples and events depend on its records alone
(netiftxlat, softirq, virtcmdlatency) is a :class:`Latency` table run by :class:`LatencyProbe`.

Each probe's object (``bpf/<probe>.bpf.c``, helpers in ``bpf/include/latency.bpf.h``) measures an
interval between two kernel points and keeps, in the kernel:

- ``hists``: a bounded table of ``struct <probe>_key`` -> a ``struct latency_hist`` (alone, or
  first member of ``struct <probe>_value``): log2 buckets of nanoseconds, the sum, and upstream's
  threshold counters (``slow[0]``, ``slow[1]``). An open-addressed table in an mmap-able ARRAY
  (``DECLARE_LATENCY_HISTS``, whose ``struct hists_slot`` the generated module mirrors;
  :class:`HistTable` reads it in place). Never reset: :meth:`Histograms.collect` reads it whole
  each cycle and reports cumulative values (an OTel histogram in seconds whose bounds are the
  kernel's bucket bounds, :data:`BOUNDS`; the threshold counters as counters). ``hists_full``
  counts measurements that found no room (``kubeskoop.agent.bpf.map.full``).
- an in-flight table of start records (not softirq's, a per-CPU array that cannot overflow): a
  direct-mapped ARRAY whose slot is picked by hashing the key, so that the per-packet path makes no
  map helper call (``DECLARE_INFLIGHT``). A start that takes another key's slot evicts it, and the
  kernel counts that in ``inflight_stats`` (``kubeskoop.agent.bpf.inflight.evicted``).
- ``events``: the ring buffer, with an event per interval above ``thresholdMs``
  (``targ_threshold_ns``), rate-limited per (namespace, type) in the kernel.

Histograms of namespaces that are gone are freed as the namespace reconciler says
(:mod:`._reconcile`); node-scope probes (softirq) keep no namespace.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from pydantic import Field

from otel_kubeskoop.bpf.generated.common import HistSlotState, InflightStat, LatencyHist
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Event, Histogram, ProbeContext, Sample, log2_bounds
from otel_kubeskoop.probes._bpf import EventArgs, HandleProbe, ObjectHandle
from otel_kubeskoop.probes._reconcile import NetnsReconciler
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

log = logging.getLogger(__name__)

__all__ = [
    "BOUNDS",
    "Directions",
    "Endpoints",
    "HistTable",
    "Histograms",
    "Latency",
    "LatencyArgs",
    "LatencyProbe",
    "histogram",
    "seconds",
]

HISTS_MAP = "hists"
HISTS_FULL_MAP = "hists_full"
INFLIGHT_STATS_MAP = "inflight_stats"

#: log2 slots of nanoseconds: slot i counts [2^i, 2^(i+1)) ns, the last one is open-ended
LATENCY_SLOTS = LatencyHist.slots.size // ctypes.sizeof(ctypes.c_uint64)
#: OTel explicit bounds, in seconds, of the kernel's log2 nanosecond buckets
BOUNDS = log2_bounds(1e-9, LATENCY_SLOTS)
_NS = 1_000_000

def histogram(h: LatencyHist) -> Histogram:
    """A ``struct latency_hist`` as a :class:`~otel_kubeskoop.probe.Histogram` in seconds."""
    return Histogram(BOUNDS, tuple(h.slots), h.sum_ns * 1e-9)


def seconds(ns: int) -> float:
    return ns * 1e-9


def _hist_of(value: Any) -> LatencyHist:
    return value if isinstance(value, LatencyHist) else value.hist


class HistTable:
    """The ``hists`` table of a loaded latency object (``bpf/include/latency.bpf.h``), read and
    written in place through the map's mmap. :meth:`read` returns each key once: two CPUs that
    added the same new key at once may have put it in two slots, and their histograms add up."""

    def __init__(self, bpf_map: Any) -> None:
        self.map = bpf_map
        self.slot = bpf_map.value_type  # struct hists_slot
        self._where: dict[bytes, list[int]] = {}  # key bytes -> slots, as of the last read

    def read(self) -> list[tuple[Any, Any]]:
        size = ctypes.sizeof(self.slot)
        with self.map.mapped() as view, view.cast("Q") as words, words[:: size // 8] as first:
            states = first.tolist()  # each slot's first word: its state
            slots = [(i, self.slot.from_buffer_copy(view, i * size))
                     for i, state in enumerate(states) if state == HistSlotState.HIST_READY]
        found: dict[bytes, tuple[Any, Any]] = {}
        self._where = {}
        for i, slot in slots:
            raw = bytes(slot.key)
            self._where.setdefault(raw, []).append(i)
            if raw not in found:
                found[raw] = (slot.key, slot.value)
                continue
            into, more = _hist_of(found[raw][1]), _hist_of(slot.value)
            for b in range(LATENCY_SLOTS):
                into.slots[b] += more.slots[b]
            into.sum_ns += more.sum_ns
            into.slow[0] += more.slow[0]
            into.slow[1] += more.slow[1]
        return list(found.values())

    def delete(self, keys: list[Any]) -> None:
        """Free the slots of keys found by the last :meth:`read`, for new keys to take."""
        size = ctypes.sizeof(self.slot)
        with self.map.mapped() as view, view.cast("Q") as words:
            for key in keys:
                for i in self._where.pop(bytes(key), []):
                    words[i * size // 8] = HistSlotState.HIST_DELETED


class LatencyArgs(EventArgs):
    """Event settings of a latency probe: ``thresholdMs`` (events for intervals above it) and the
    rate limit (``eventRate``/``eventBurst`` per namespace and event type). Subclasses set the
    default threshold (upstream's)."""

    threshold_ms: float = Field(10.0, alias="thresholdMs", gt=0, le=3_600_000)

    @property
    def threshold_ns(self) -> int:
        return int(self.threshold_ms * _NS)


    @property
    def settings(self) -> dict[str, int]:
        """The ``const volatile`` settings the threshold gives: ``targ_threshold_ns``."""
        return {"targ_threshold_ns": self.threshold_ns}


class Histograms:
    """The ``hists`` of a latency probe's object, and its in-flight counts (``inflight``: the
    in-flight table's name, None for softirq), read through the probe's handle. ``node_scope``:
    keys have no namespace, every sample is the node's."""

    def __init__(self, bpf: ObjectHandle, inflight: str | None, node_scope: bool = False) -> None:
        self.bpf = bpf
        self.inflight_map = inflight
        self.node_scope = node_scope
        self._reconciler: NetnsReconciler[tuple[Any, Any]] = NetnsReconciler(
            lambda entry: (entry[0].netns, entry[0].netns_cookie))
        self._table: HistTable | None = None
        self._table_of: Any = None  # the object _table reads

    def table(self) -> HistTable:
        """The loaded object's ``hists`` (kept between collections: deletions use the slots the
        last read found)."""
        if self._table is None or self._table_of is not self.bpf.obj:
            self._table = HistTable(self.bpf.map(HISTS_MAP))
            self._table_of = self.bpf.obj
        return self._table

    def read(self) -> list[tuple[Any, Any]]:
        """Every ``hists`` entry, decoded: [(key, value)]."""
        return self.table().read()

    def live(self) -> list[tuple[Any, Any, int | None]]:
        """(key, value, netns for the sample) of the entries to report; those of namespaces that
        are gone are deleted from the table."""
        entries = self.read()
        if self.node_scope:
            return [(k, v, None) for k, v in entries]
        verdict = self._reconciler.reconcile(entries, self.bpf.ctx.cycle.namespaces)
        if verdict.gone:
            self.table().delete([key for key, _ in verdict.gone])
            log.debug("%s: deleted %d histograms of namespaces that are gone",
                      self.bpf.spec.name, len(verdict.gone))
        return [(k, v, netns) for (k, v), netns in verdict.live]

    def inflight(self) -> dict[str, int]:
        """The in-flight counters by name (``started``, ``ended``, ``evicted``...)."""
        if self.bpf.obj is None or self.inflight_map is None:
            return {}
        stats = dict(self.bpf.map(INFLIGHT_STATS_MAP).items())
        return {stat.name.removeprefix("INFLIGHT_").lower(): stats.get(stat.value, 0)
                for stat in InflightStat if stat is not InflightStat.INFLIGHT__MAX}

    def evicted(self) -> int:
        """Start records the in-flight table evicted since start (counted in the kernel)."""
        return self.inflight().get("evicted", 0)

    def collect(self, samples_of: Callable[[Any, Any, int | None], list[Sample]]) -> list[Sample]:
        """``samples_of(key, value, netns)`` of every live entry, then the table's fill, the
        in-flight evictions and the event losses."""
        if self.bpf.obj is None:
            return []
        out: list[Sample] = []
        for key, value, netns in self.live():
            out += samples_of(key, value, netns)
        out.append(self.bpf.full_sample(HISTS_FULL_MAP, HISTS_MAP))
        if self.inflight_map is not None:
            out.append(Sample(I.AGENT_BPF_INFLIGHT_EVICTED, self.evicted(), None,
                              ((A.PROBE, self.bpf.ctx.name), (A.BPF_MAP, self.inflight_map))))
        out += self.bpf.loss_samples()
        return out


#: direction -> (start, end): the attach points in use that bound each direction's interval
Endpoints = dict[int, tuple[str, str]]


@dataclass(frozen=True)
class Directions:
    """A latency probe of TCP packets or data in two directions (kernellatency, socketlatency):
    per (namespace, direction) a histogram (``duration``) and two threshold counters
    (``counters[direction]``); ``words``: direction -> ``network.io.direction``."""

    enum: type[IntEnum]
    words: Mapping[int, str]
    duration: InstrumentSpec
    counters: Mapping[int, tuple[InstrumentSpec, InstrumentSpec]]

    def samples(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        try:
            direction = self.enum(key.direction)
        except ValueError:
            return []
        slow0, slow1 = self.counters[direction]
        return [
            Sample(self.duration, histogram(value), netns,
                   ((A.NETWORK_IO_DIRECTION, self.words[direction]),)),
            Sample(slow0, value.slow[0], netns),
            Sample(slow1, value.slow[1], netns),
        ]


def _nothing(args: Any) -> Mapping[str, int]:
    return {}


@dataclass(frozen=True)
class Latency:
    """A latency probe whose samples and events depend on its records alone: its ``object``, its
    ``args`` model, its in-flight table (``inflight``; None: softirq's per-CPU array), how a
    ``hists`` entry becomes samples (``samples(key, value, netns)``) and a record an Event
    (``decode(raw, clock_offset_ns)``). ``settings(args)`` and ``sizes(args)``: the ``const
    volatile`` settings and map sizes it adds to the threshold's; ``node_scope``: keys have no
    namespace."""

    object: ObjectSpec
    args: type[LatencyArgs]
    inflight: str | None
    samples: Callable[[Any, Any, int | None], list[Sample]]
    decode: Callable[[bytes, int], Event]
    settings: Callable[[Any], Mapping[str, int]] = _nothing
    sizes: Callable[[Any], Mapping[str, int]] = _nothing
    node_scope: bool = False


class LatencyProbe(HandleProbe):
    """Loads a latency object, reads its histograms, pumps its events; ``TABLE`` says which."""

    TABLE: ClassVar[Latency]

    def __init__(self, args: LatencyArgs | None, ctx: ProbeContext) -> None:
        self.table = self.TABLE
        self.args = args if args is not None else self.table.args()
        self.bpf = ObjectHandle(self.table.object, ctx, self.decode)
        self.hists = Histograms(self.bpf, self.table.inflight, self.table.node_scope)

    def start(self) -> None:
        self.bpf.start({**self.args.settings, **self.table.settings(self.args)}, events=self.args,
                       max_entries=self.table.sizes(self.args))

    def collect(self) -> list[Sample]:
        return self.hists.collect(self.table.samples)

    def decode(self, raw: bytes) -> Event:
        return self.table.decode(raw, self.bpf.clock_offset)
