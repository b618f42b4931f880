# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the latency probes (netiftxlat, softirq, biolatency, virtcmdlatency, and through
:class:`DirectionLatencyProbe` kernellatency and socketlatency), on top of
:class:`~otel_kubeskoop.probes._bpf.ObjectProbe`.

Each probe's object (``bpf/<probe>.bpf.c``, helpers in ``bpf/include/latency.bpf.h``) measures an
interval between two kernel points and keeps, in the kernel:

- ``hists``: a bounded table of ``struct <probe>_key`` -> a ``struct latency_hist`` (alone, or
  first member of ``struct <probe>_value``): log2 buckets of nanoseconds, the sum, and upstream's
  threshold counters (``slow[0]``, ``slow[1]``). An open-addressed table in an mmap-able ARRAY
  (``DECLARE_LATENCY_HISTS``; :class:`HistTable` reads it in place). Never reset:
  :meth:`LatencyProbe.collect` reads it whole each cycle and reports cumulative values (an OTel
  histogram in seconds whose bounds are the kernel's bucket bounds, :data:`BOUNDS`; the threshold
  counters as counters). ``hists_full`` counts measurements that found no room
  (``kubeskoop.agent.bpf.map.full``).
- an in-flight table of start records (not softirq's, a per-CPU array that cannot overflow): a
  direct-mapped ARRAY whose slot is picked by hashing the key, so that the per-packet path makes no
  map helper call (``DECLARE_INFLIGHT``). A start that takes another key's slot evicts it, and the
  kernel counts that in ``inflight_stats`` (``kubeskoop.agent.bpf.inflight.evicted``).
- ``events``: the ring buffer, read only when the config asks this probe for events, with an
  event per interval above ``thresholdMs``, rate-limited per (namespace, type) in the kernel;
  ``losses`` counts what the kernel refused to send (``kubeskoop.agent.events.lost``).

Keys carry the namespace's inode and the low 32 bits of its never-reused id (``netns_cookie``,
``bpf/include/netns.bpf.h``): when two ids share an inode (the kernel reuses the inode numbers
of freed namespaces) only the newest one's histograms are reported and the older ones deleted.
Namespaces that went away: their slots in ``hists`` are freed once the namespace has been
missing from the agent's scan at two collections in a row (as :mod:`._bpf` does for counters);
node-scope probes (softirq) keep no namespace.
"""

from __future__ import annotations

import abc

import ctypes
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import Field

from otel_kubeskoop.bpf.generated.common import HistSlotState, InflightStat, LatencyHist
from otel_kubeskoop.probe import Histogram, ProbeContext, Sample, log2_bounds
from otel_kubeskoop.probes import _bpf
from otel_kubeskoop.probes._bpf import EventArgs, ObjectProbe, newest_cookies, still_absent
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)

__all__ = [
    "BOUNDS",
    "DirectionLatencyProbe",
    "Endpoints",
    "HistTable",
    "LatencyArgs",
    "LatencyProbe",
    "histogram",
    "seconds",
]

HISTS_MAP = "hists"
HISTS_FULL_MAP = "hists_full"
INFLIGHT_STATS_MAP = "inflight_stats"
EVENTS_MAP = _bpf.EVENTS_MAP  # the ring buffer and its losses, as in every eBPF object
LOSSES_MAP = _bpf.LOSSES_MAP

#: log2 slots of nanoseconds: slot i counts [2^i, 2^(i+1)) ns, the last one is open-ended
LATENCY_SLOTS = LatencyHist.slots.size // ctypes.sizeof(ctypes.c_uint64)
#: OTel explicit bounds, in seconds, of the kernel's log2 nanosecond buckets
BOUNDS = log2_bounds(1e-9, LATENCY_SLOTS)
_NS = 1_000_000

#: direction -> (start, end): the attach points in use that bound each direction's interval
Endpoints = dict[int, tuple[str, str]]


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


class LatencyProbe(ObjectProbe):
    """Load a latency probe's object, read its histograms, pump its events.

    Subclasses set the class attributes and implement :meth:`samples_of` and :meth:`decode`.
    """

    KEY: ClassVar[type[ctypes.Structure]]  # struct <probe>_key
    VALUE: ClassVar[type[ctypes.Structure]] = LatencyHist  # the hists map's value
    SLOT: ClassVar[type[ctypes.Structure]]  # struct hists_slot {state, KEY, VALUE}
    INFLIGHT_MAP: ClassVar[str | None] = None  # the in-flight table, if any
    NODE_SCOPE: ClassVar[bool] = False  # keys have no netns: every sample is the node's
    ARGS: ClassVar[type[LatencyArgs]] = LatencyArgs

    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        super().__init__(args, ctx)
        self._absent: dict[int, int] = {}  # netns -> consecutive collections missing
        self._hists: HistTable | None = None
        self._hists_of: Any = None  # the object _hists reads

    @classmethod
    def default_args(cls) -> Any:
        return cls.ARGS()

    # --- subclass hooks ----------------------------------------------------------------------

    def event_rodata(self) -> dict[str, int | bool]:
        return {**super().event_rodata(), "targ_threshold_ns": self.args.threshold_ns}

    @abc.abstractmethod
    def samples_of(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        """The samples of one ``hists`` entry."""

    # --- metrics -----------------------------------------------------------------------------

    def hists(self) -> HistTable:
        """The loaded object's ``hists`` (kept between collections: deletions use the slots the
        last read found)."""
        if self._hists is None or self._hists_of is not self.obj:
            self._hists = HistTable(self.obj.map(HISTS_MAP, ctypes.c_uint32, self.SLOT))
            self._hists_of = self.obj
        return self._hists

    def read_hists(self) -> list[tuple[Any, Any]]:
        """Every ``hists`` entry, decoded: [(key, value)]."""
        return self.hists().read()

    def _newest(self, entries: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The entries of the newest namespace that had each inode; those of older ones (dead:
        the kernel gave their inode to a new namespace) are deleted from the map."""
        if not any(name == "netns_cookie" for name, *_ in self.KEY._fields_):
            return entries
        newest = newest_cookies(key for key, _ in entries)
        stale = [key for key, _ in entries if key.netns_cookie != newest[key.netns]]
        if not stale:
            return entries
        self.hists().delete(stale)
        log.debug("%s: deleted %d histograms of namespaces whose inode was reused", self.OBJECT,
                  len(stale))
        return [(k, v) for k, v in entries if k.netns_cookie == newest[k.netns]]

    def _kept(self, entries: list[tuple[Any, Any]]) -> list[tuple[Any, Any, int | None]]:
        """(key, value, netns for the sample) of the entries to report; the entries of namespaces
        missing ABSENT_COLLECTIONS scans in a row are deleted from the map."""
        if self.NODE_SCOPE:
            return [(k, v, None) for k, v in entries]
        entries = self._newest(entries)
        known = self.ctx.cycle.namespaces
        if not known:  # no scan yet: report everything, delete nothing
            return [(k, v, k.netns or None) for k, v in entries]
        kept, gone = [], []
        missing = {k.netns for k, _ in entries if k.netns and k.netns not in known}
        absent = still_absent(self._absent, missing)
        for key, value in entries:
            if not key.netns:
                kept.append((key, value, None))
            elif key.netns in known:
                kept.append((key, value, key.netns))
            elif key.netns not in absent:
                gone.append(key)
        self._absent = absent
        if gone:
            self.hists().delete(gone)
            log.debug("%s: deleted %d histograms of vanished namespaces", self.OBJECT, len(gone))
        return kept

    def inflight(self) -> dict[str, int]:
        """The in-flight counters by name (``started``, ``ended``, ``evicted``...)."""
        if self.obj is None or self.INFLIGHT_MAP is None:
            return {}
        stats = dict(self.obj.map(INFLIGHT_STATS_MAP, ctypes.c_uint32, ctypes.c_uint64).items())
        return {stat.name.removeprefix("INFLIGHT_").lower(): stats.get(stat.value, 0)
                for stat in InflightStat if stat is not InflightStat.INFLIGHT__MAX}

    def evicted(self) -> int:
        """Start records the in-flight table evicted since start (counted in the kernel)."""
        return self.inflight().get("evicted", 0)

    def collect(self) -> list[Sample]:
        if self.obj is None:
            return []
        out: list[Sample] = []
        for key, value, netns in self._kept(self.read_hists()):
            out += self.samples_of(key, value, netns)
        out.append(self.map_full_sample(HISTS_FULL_MAP, HISTS_MAP))
        if self.INFLIGHT_MAP is not None:
            out.append(Sample(I.AGENT_BPF_INFLIGHT_EVICTED, self.evicted(), None,
                              ((A.PROBE, self.ctx.name), (A.BPF_MAP, self.INFLIGHT_MAP))))
        out += self.loss_samples()
        return out


class DirectionLatencyProbe(LatencyProbe):
    """A latency probe of TCP packets or data in two directions (kernellatency, socketlatency):
    per (namespace, direction) a histogram and two threshold counters; its events name the
    attach points in use that bound the interval (:attr:`points`).

    Subclasses set ``DIRECTION`` (the ``enum <probe>_direction`` mirror), ``DIRECTIONS``
    (direction -> ``network.io.direction``), ``DURATION`` (the histogram), ``COUNTERS``
    (direction -> its two threshold counters) and ``ENDPOINTS`` (a ``staticmethod``:
    ``BPFObject.chosen`` -> :data:`Endpoints`), and set :attr:`points` in ``__init__``.
    """

    DIRECTION: ClassVar[Callable[[int], Any]]
    DIRECTIONS: ClassVar[Mapping[Any, str]]
    DURATION: ClassVar[Any]
    COUNTERS: ClassVar[Mapping[Any, tuple[Any, Any]]]
    ENDPOINTS: ClassVar[Callable[[dict[str, Any]], Endpoints]]

    #: direction -> (start, end) attach points in use (set once attached)
    points: Endpoints

    def check_chosen(self, obj: Any) -> None:
        self.points = self.ENDPOINTS(obj.chosen)

    def samples_of(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        try:
            direction = self.DIRECTION(key.direction)
        except ValueError:
            return []
        slow0, slow1 = self.COUNTERS[direction]
        return [
            Sample(self.DURATION, histogram(value), netns,
                   ((A.NETWORK_IO_DIRECTION, self.DIRECTIONS[direction]),)),
            Sample(slow0, value.slow[0], netns),
            Sample(slow1, value.slow[1], netns),
        ]
