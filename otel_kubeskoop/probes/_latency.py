# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the latency probes (netiftxlat, softirq, biolatency, virtcmdlatency).

Each probe's object (``bpf/<probe>.bpf.c``, helpers in ``bpf/include/latency.bpf.h``) measures an
interval between two kernel points and keeps, in the kernel:

- ``hists``: a bounded HASH of ``struct <probe>_key`` -> a ``struct latency_hist`` (alone, or
  first member of ``struct <probe>_value``): log2 buckets of nanoseconds, the sum, and upstream's
  threshold counters (``slow[0]``, ``slow[1]``). Never reset: :meth:`LatencyProbe.collect` reads
  it whole each cycle and reports cumulative values (an OTel histogram in seconds whose bounds are
  the kernel's bucket bounds, :data:`BOUNDS`; the threshold counters as counters).
  ``hists_full`` counts measurements that found it full (``kubeskoop.agent.bpf.map.full``).
- an in-flight LRU map of start timestamps (not softirq's, a per-CPU array that cannot overflow),
  whose evictions are recovered from ``inflight_stats``:
  ``evicted = started - ended - discarded - entries now`` (``kubeskoop.agent.bpf.inflight.evicted``).
- ``events``: the ring buffer, read only when the config asks this probe for events, with an
  event per interval above ``thresholdMs``, rate-limited per (namespace, type) in the kernel;
  ``losses`` counts what the kernel refused to send (``kubeskoop.agent.events.lost``).

Keys carry the namespace's inode and the low 32 bits of its never-reused id (``netns_cookie``,
``bpf/include/netns.bpf.h``): when two ids share an inode (the kernel reuses the inode numbers
of freed namespaces) only the newest one's histograms are reported and the older ones deleted.
Namespaces that went away: their keys are deleted from ``hists`` once the namespace has been
missing from the agent's scan at two collections in a row (as :mod:`._bpf` does for counters);
node-scope probes (softirq) keep no namespace.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from otel_kubeskoop.bpf.layouts import LATENCY_SLOTS, DecodeError, InflightStat, LatencyHist
from otel_kubeskoop.probe import Event, Histogram, ProbeContext, Sample, Unavailable, log2_bounds
from otel_kubeskoop.probes._bpf import ABSENT_COLLECTIONS, EventArgs, clock_offset_ns
from otel_kubeskoop.telemetry import attributes as A
from otel_kubeskoop.telemetry import instruments as I

log = logging.getLogger(__name__)

__all__ = [
    "BOUNDS",
    "LatencyArgs",
    "LatencyProbe",
    "histogram",
    "seconds",
]

HISTS_MAP = "hists"
HISTS_FULL_MAP = "hists_full"
INFLIGHT_STATS_MAP = "inflight_stats"
EVENTS_MAP = "events"
LOSSES_MAP = "losses"

#: OTel explicit bounds, in seconds, of the kernel's log2 nanosecond buckets
BOUNDS = log2_bounds(1e-9, LATENCY_SLOTS)
_NS = 1_000_000


def histogram(h: LatencyHist) -> Histogram:
    """A ``struct latency_hist`` as a :class:`~otel_kubeskoop.probe.Histogram` in seconds."""
    return Histogram(BOUNDS, tuple(h.slots), h.sum_ns * 1e-9)


def seconds(ns: int) -> float:
    return ns * 1e-9


class LatencyArgs(EventArgs):
    """Event settings of a latency probe: ``thresholdMs`` (events for intervals above it) and the
    rate limit (``eventRate``/``eventBurst`` per namespace and event type). Subclasses set the
    default threshold (upstream's)."""

    threshold_ms: float = Field(10.0, alias="thresholdMs", gt=0, le=3_600_000)

    @property
    def threshold_ns(self) -> int:
        return int(self.threshold_ms * _NS)


class LatencyProbe:
    """Load a latency probe's object, read its histograms, pump its events.

    Subclasses set the class attributes and implement :meth:`samples_of` and :meth:`decode`.
    """

    OBJECT: ClassVar[str]  # bpf/<OBJECT>.bpf.c
    PLANS: ClassVar[tuple[Any, ...]]  # AttachPlans
    KEY: ClassVar[type[ctypes.Structure]]  # struct <probe>_key
    VALUE: ClassVar[type[ctypes.Structure]] = LatencyHist  # the hists map's value
    INFLIGHT_MAP: ClassVar[str | None] = None  # the in-flight LRU map, if any
    NODE_SCOPE: ClassVar[bool] = False  # keys have no netns: every sample is the node's
    ARGS: ClassVar[type[LatencyArgs]] = LatencyArgs

    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.args = args if args is not None else self.ARGS()
        self.ctx = ctx
        self.obj: Any = None  # BPFObject while started
        self.clock_offset = 0
        self._absent: dict[int, int] = {}  # netns -> consecutive collections missing
        self._evicted = 0
        #: seconds from start() called to attached
        self.start_seconds: float | None = None

    # --- subclass hooks ----------------------------------------------------------------------

    def rodata(self) -> dict[str, int | bool]:
        """``const volatile`` settings beyond the event ones."""
        return {}

    def max_entries(self) -> dict[str, int]:
        """Map sizes to set before load."""
        return {}

    def features(self) -> Any:
        """The kernel features the loader chooses attach points with (None: the running kernel's)."""
        return None

    def check_chosen(self, obj: Any) -> None:
        """Called once attached; may raise to refuse a combination of attach points."""

    def samples_of(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        """The samples of one ``hists`` entry."""
        raise NotImplementedError

    def decode(self, raw: bytes) -> Event:
        raise NotImplementedError

    # --- lifecycle ---------------------------------------------------------------------------

    def _open(self, features: Any) -> Any:
        from otel_kubeskoop.bpf.loader import BPFObject
        from otel_kubeskoop.bpf.objects import object_path

        rodata: dict[str, int | bool] = {
            "targ_emit": self.ctx.events_enabled,
            "targ_threshold_ns": self.args.threshold_ns,
            "targ_rate_per_sec": self.args.event_rate,
            "targ_burst": self.args.event_burst,
        }
        rodata.update(self.rodata())
        try:
            obj = BPFObject(object_path(self.OBJECT), self.PLANS, rodata=rodata,
                            max_entries=self.max_entries(), features=features)
            obj.start()
        except OSError as exc:  # libbpf.so.1 itself not loadable
            raise Unavailable(f"libbpf.so.1 not loadable ({exc}); Debian package libbpf1") from None
        return obj

    def start(self) -> None:
        began = time.perf_counter()
        obj = self._open(self.features())
        self.obj = obj
        try:
            self.check_chosen(obj)
            if self.ctx.events_enabled:
                self.clock_offset = clock_offset_ns()
                ring = obj.ringbuf(EVENTS_MAP, self._on_record)
                self.ctx.watch(ring.fileno(), ring.consume)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - began
        log.debug("%s attached in %.0f ms: %s", self.OBJECT, self.start_seconds * 1000,
                  ", ".join(f"{hook}: {point}" for hook, point in obj.chosen.items()))

    def stop(self) -> None:
        obj, self.obj = self.obj, None
        if obj is not None:
            obj.close()

    @property
    def chosen(self) -> dict[str, Any]:
        """hook -> attach point in use (empty when not started)."""
        return dict(self.obj.chosen) if self.obj is not None else {}

    # --- events ------------------------------------------------------------------------------

    def _on_record(self, raw: bytes) -> None:
        try:
            event = self.decode(raw)
        except (DecodeError, ValueError) as exc:
            self.ctx.decode_errors += 1
            log.debug("%s: undecodable record: %s", self.OBJECT, exc)
            return
        self.ctx.emit(event)

    # --- metrics -----------------------------------------------------------------------------

    def read_hists(self) -> list[tuple[Any, Any]]:
        """Every ``hists`` entry, decoded: [(key, value)]."""
        return self.obj.map(HISTS_MAP, self.KEY, self.VALUE).items()

    def _newest(self, entries: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The entries of the newest namespace that had each inode; those of older ones (dead:
        the kernel gave their inode to a new namespace) are deleted from the map."""
        if not any(name == "netns_cookie" for name, *_ in self.KEY._fields_):
            return entries
        newest: dict[int, int] = {}
        for key, _ in entries:
            if key.netns_cookie > newest.get(key.netns, -1):
                newest[key.netns] = key.netns_cookie
        stale = [key for key, _ in entries if key.netns_cookie != newest[key.netns]]
        if not stale:
            return entries
        hists = self.obj.map(HISTS_MAP, self.KEY, self.VALUE)
        for key in stale:
            hists.delete(key)
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
        kept, gone, absent = [], [], {}
        missing = {k.netns for k, _ in entries if k.netns and k.netns not in known}
        for netns in missing:
            misses = self._absent.get(netns, 0) + 1
            if misses < ABSENT_COLLECTIONS:
                absent[netns] = misses
        for key, value in entries:
            if not key.netns:
                kept.append((key, value, None))
            elif key.netns in known:
                kept.append((key, value, key.netns))
            elif key.netns not in absent:
                gone.append(key)
        self._absent = absent
        if gone:
            hists = self.obj.map(HISTS_MAP, self.KEY, self.VALUE)
            for key in gone:
                hists.delete(key)
            log.debug("%s: deleted %d histograms of vanished namespaces", self.OBJECT, len(gone))
        return kept

    def inflight(self) -> dict[str, int]:
        """The in-flight counters by name (``started``, ``ended``...), and ``entries`` now."""
        if self.obj is None or self.INFLIGHT_MAP is None:
            return {}
        stats = dict(self.obj.map(INFLIGHT_STATS_MAP, ctypes.c_uint32, ctypes.c_uint64).items())
        out = {stat.name.removeprefix("INFLIGHT_").lower(): stats.get(stat.value, 0)
               for stat in InflightStat if stat is not InflightStat.INFLIGHT__MAX}
        out["entries"] = len(self.obj.map(self.INFLIGHT_MAP).items())
        return out

    def evicted(self) -> int:
        """Entries the in-flight LRU map evicted since start (monotonic)."""
        stats = self.inflight()
        if stats:
            now = stats["started"] - stats["ended"] - stats["discarded"] - stats["entries"]
            self._evicted = max(self._evicted, now)
        return self._evicted

    def collect(self) -> list[Sample]:
        if self.obj is None:
            return []
        out: list[Sample] = []
        for key, value, netns in self._kept(self.read_hists()):
            out += self.samples_of(key, value, netns)
        probe = (A.PROBE, self.ctx.name)
        full = self.obj.map(HISTS_FULL_MAP, ctypes.c_uint32, ctypes.c_uint64).lookup(0) or 0
        out.append(Sample(I.AGENT_BPF_MAP_FULL, full, None, (probe, (A.BPF_MAP, HISTS_MAP))))
        if self.INFLIGHT_MAP is not None:
            out.append(Sample(I.AGENT_BPF_INFLIGHT_EVICTED, self.evicted(), None,
                              (probe, (A.BPF_MAP, self.INFLIGHT_MAP))))
        if self.ctx.events_enabled:
            for reason, n in self.losses().items():
                out.append(Sample(I.AGENT_EVENTS_LOST, n, None, (probe, (A.LOSS_REASON, reason))))
        return out

    def losses(self) -> dict[str, int]:
        """Events the kernel refused to send, by reason (ring_buffer_full, rate_limited)."""
        if self.obj is None:
            return {}
        losses: Mapping[int, int] = dict(
            self.obj.map(LOSSES_MAP, ctypes.c_uint32, ctypes.c_uint64).items())
        return {"ring_buffer_full": losses.get(0, 0), "rate_limited": losses.get(1, 0)}
