# SPDX-License-Identifier: Apache-2.0
"""What an eBPF probe holds: an :class:`ObjectHandle` on its object, and, for the probes that count
in the kernel, :class:`Counters`.

The handle does what every eBPF probe does with its object (``otel_kubeskoop/bpf/generated/<stem>
.py`` describes it): open it with the probe's ``const volatile`` settings and the event ones,
attach it (the loader chooses among the candidates of the plans the object's programs state),
pump its ring buffer into ``ctx.emit`` while events are on, count what the kernel could not send,
close it. Each object has:

- ``events``: the ring buffer, read only when the config asks this probe for events; ``losses``
  counts what the kernel refused to send (rate limit, full ring buffer), reported as
  ``kubeskoop.agent.events.lost``;
- the event settings ``targ_emit``, ``targ_rate_per_sec`` and ``targ_burst``
  (``bpf/include/ratelimit.bpf.h``), from :class:`EventArgs`.

The counting probes' objects (packetloss, tcpreset, tcpretrans) also have ``counters``: a bounded
HASH of their key -> ``__u64``, incremented in the kernel and never reset. :class:`Counters` reads
it whole each cycle and reports the values as they are (cumulative kernel counters, which the
pipeline expects; a probe restart starts them again at 0, which the pipeline treats like any
counter reset), reconciled with the namespace scan (:mod:`._reconcile`); ``counters_full`` counts
increments that found the hash full (``kubeskoop.agent.bpf.map.full``). packetloss and tcpretrans
also count per tuple, for the compat endpoint's tuple labels (:class:`TupleCounts`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from otel_kubeskoop.bpf.maps import BPFMap
from otel_kubeskoop.bpf.shared import SharedObjects
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Event, ProbeContext, Sample, Unavailable
from otel_kubeskoop.probes._decode import clock_offset_ns, emit_records, tuple_attributes
from otel_kubeskoop.probes._reconcile import NetnsReconciler
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

log = logging.getLogger(__name__)

__all__ = [
    "Counters",
    "EventArgs",
    "HandleProbe",
    "ObjectHandle",
    "RingEventArgs",
    "TupleCounts",
    "bpf_requires",
    "event_ring",
    "small_ring_without_events",
]

EVENTS_MAP = "events"
LOSSES_MAP = "losses"
COUNTERS_MAP = "counters"
COUNTERS_FULL_MAP = "counters_full"

#: what every eBPF probe requires besides its attach points (:func:`bpf_requires`)
REQUIRES_BTF = "kernel BTF (/sys/kernel/btf/vmlinux)"
REQUIRES_RINGBUF = "BPF ring buffer (Linux 5.8+) for events"
REQUIRES_CAPS = "CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN"


class EventArgs(BaseModel):
    """Event settings every eBPF probe takes (config ``event.probes[].args``).

    The kernel sends at most ``eventRate`` events per second per (namespace, event type), with
    bursts of up to ``eventBurst``; the rest are counted (``kubeskoop.agent.events.lost``,
    reason ``rate_limited``), never silently dropped. ``eventRate: 0`` turns the limit off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event_rate: int = Field(100, alias="eventRate", ge=0, le=1_000_000)
    event_burst: int = Field(200, alias="eventBurst", ge=0, le=1_000_000)


DEFAULT_RING_KIB = 256  # EVENTS_RINGBUF_BYTES in bpf/include/events.bpf.h
MAX_RING_KIB = 64 << 10


class RingEventArgs(EventArgs):
    """:class:`EventArgs` of a probe whose BPF object is its own (tcpreset, tcpretrans), which
    can size its ring buffer: ``ringBufferKiB``, a power of two from 4 to 65536 (64 MiB).

    A larger ring absorbs longer gaps in reading it (the agent waiting for a CPU, a burst) before
    the kernel counts ``ring_buffer_full``: 256 KiB hold about 3,600 tcpreset records (72 bytes
    each with the ring's header), 70 ms at 50,000 events/s; 1024 KiB about 280 ms. What it costs
    is kernel memory, allocated at load and never swapped, charged to the agent's memory cgroup
    (on kernels before 5.11 to ``RLIMIT_MEMLOCK``): the size given plus two pages, per probe
    with events on (a probe without events keeps one page).
    """

    ring_buffer_kib: int = Field(DEFAULT_RING_KIB, alias="ringBufferKiB", ge=4, le=MAX_RING_KIB)

    @field_validator("ring_buffer_kib")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"ringBufferKiB must be a power of two (the kernel's ring buffer size), not {value}")
        return value


def event_ring(ctx: ProbeContext, args: RingEventArgs) -> dict[str, int]:
    """``max_entries`` of a probe's own ring buffer: ``ringBufferKiB`` (at least a page) while it
    sends events, else one page (:func:`small_ring_without_events`)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return {EVENTS_MAP: max(page, args.ring_buffer_kib << 10) if ctx.events_enabled else page}


def bpf_requires(*hooks: str) -> tuple[str, ...]:
    """A BPF probe's ``ProbeSpec.requires``: kernel BTF, ``hooks`` (what it attaches to), the ring
    buffer for events and the capabilities, in that order."""
    return (REQUIRES_BTF, *hooks, REQUIRES_RINGBUF, REQUIRES_CAPS)


def small_ring_without_events(ctx: ProbeContext) -> dict[str, int]:
    """``max_entries`` that shrink the ring buffer to one page when the probe sends no events:
    nothing is written to it then, and 256 KiB of locked kernel memory are saved."""
    return {} if ctx.events_enabled else {EVENTS_MAP: os.sysconf("SC_PAGE_SIZE")}


class ObjectHandle:
    """One probe's BPF object while it runs (:attr:`obj`, a ``BPFObject``, None when stopped).

    ``decode(raw)`` turns one ring-buffer record into an Event; the records of one read are
    decoded and emitted together; a record it refuses (or fails on) is counted in
    ``ctx.decode_errors``. :attr:`features`: the kernel features the loader chooses attach
    points with (None: the running kernel's).
    """

    def __init__(self, spec: ObjectSpec, ctx: ProbeContext,
                 decode: Callable[[bytes], Event] | None = None) -> None:
        self.spec = spec
        self.ctx = ctx
        self._decode = decode
        self.features: Any = None
        self.obj: Any = None
        #: add to a record's bpf_ktime_get_ns() to get Unix time (set when events start)
        self.clock_offset = 0
        #: seconds from start() called to attached
        self.start_seconds: float | None = None

    def start(self, settings: Mapping[str, int | bool] | None = None, *,
              events: EventArgs | None = None, max_entries: Mapping[str, int] | None = None,
              features: Any = None,
              attached: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        """Open with ``settings`` (and, given ``events``, the event settings), load, attach.

        ``max_entries``: map sizes to set before load (not for a probe of a shared object, whose
        maps the object's first probe sized); ``features``: for this start instead of
        :attr:`features`; ``attached(chosen)`` is
        called once attached, before events flow, and may raise to refuse the combination of
        attach points (the object is closed). Raises ``Unavailable`` with the reason.
        """
        from otel_kubeskoop.bpf.loader import BPFObject

        began = time.perf_counter()
        rodata = dict(settings or {})
        if events is not None:
            rodata.update(targ_emit=self.ctx.events_enabled, targ_rate_per_sec=events.event_rate,
                          targ_burst=events.event_burst)
        features = features if features is not None else self.features
        try:
            if self.spec.host is not None:  # a probe of a shared object (bpf/datapath.bpf.c)
                if self.ctx.objects is None:
                    self.ctx.objects = SharedObjects()
                obj = self.ctx.objects.join(self.spec, rodata, features)
            else:
                obj = BPFObject.of(self.spec, rodata=rodata, max_entries=max_entries,
                                   features=features)
                obj.start()
        except OSError as exc:  # libbpf.so.1 itself not loadable
            raise Unavailable(f"libbpf.so.1 not loadable ({exc}); Debian package libbpf1") from None
        self.obj = obj
        try:
            if attached is not None:
                attached(obj.chosen)
            if self.ctx.events_enabled and self._decode is not None:
                self.clock_offset = clock_offset_ns()
                ring = obj.ringbuf(EVENTS_MAP, self._on_records, batch=True)
                self.ctx.watch(ring.fileno(), ring.consume)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - began
        log.debug("%s attached in %.0f ms: %s", self.spec.name, self.start_seconds * 1000,
                  ", ".join(f"{hook}: {point}" for hook, point in obj.chosen.items()))

    def stop(self) -> None:
        obj, self.obj = self.obj, None
        if obj is not None:
            obj.close()

    @property
    def chosen(self) -> dict[str, Any]:
        """hook -> attach point in use (empty when not started)."""
        return dict(self.obj.chosen) if self.obj is not None else {}

    def programs(self) -> dict[str, int]:
        """Loaded programs and their fds, for per-program statistics (config ``bpfStats``)."""
        return self.obj.program_fds() if self.obj is not None else {}

    def misses(self) -> dict[str, int]:
        """Its programs (a probe of a shared object: its handlers, named as by :meth:`costs`) ->
        runs the kernel skipped as recursive."""
        return self.obj.misses() if self.obj is not None else {}

    def costs(self) -> dict[str, tuple[int, int]]:
        """A probe of a shared object: (runs, ns) of its handler per hook, named as a program of
        its own would be (``packetloss_free_btf``), counted while ``bpfStats`` is on."""
        costs = getattr(self.obj, "costs", None)
        return costs() if costs is not None else {}

    def map(self, name: str, **kwargs: Any) -> BPFMap:
        """A map of the started object, keys and values decoded with the spec's mirrors."""
        spec = self.spec.maps.get(name)
        if spec is None:
            raise KeyError(f"{self.spec.name}: no map {name!r} in the object's spec")
        return self.obj.map(name, spec.key, spec.value, **kwargs)

    def _on_records(self, records: list[bytes]) -> None:
        emit_records(self._decode, records, self.ctx, self.spec.name)  # type: ignore[arg-type]

    # --- self-telemetry -----------------------------------------------------------------

    def losses(self) -> dict[str, int]:
        """Events the kernel refused to send, by reason (ring_buffer_full, rate_limited)."""
        if self.obj is None:
            return {}
        losses = dict(self.map(LOSSES_MAP).items())
        return {"ring_buffer_full": losses.get(0, 0), "rate_limited": losses.get(1, 0)}

    def loss_samples(self) -> list[Sample]:
        """``kubeskoop.agent.events.lost`` by reason, with events on (none without, nor for an
        object that sends none)."""
        if not self.ctx.events_enabled or LOSSES_MAP not in self.spec.maps:
            return []
        probe = (A.PROBE, self.ctx.name)
        return [Sample(I.AGENT_EVENTS_LOST, n, None, (probe, (A.LOSS_REASON, reason)))
                for reason, n in self.losses().items()]

    def full_sample(self, full_map: str, counted_map: str) -> Sample:
        """``kubeskoop.agent.bpf.map.full`` of ``counted_map``: the increments that found it full,
        as its one-entry counter ``full_map`` has them."""
        full = self.map(full_map).lookup(0) or 0
        return Sample(I.AGENT_BPF_MAP_FULL, full, None,
                      ((A.PROBE, self.ctx.name), (A.BPF_MAP, counted_map)))


class HandleProbe:
    """What every eBPF probe holding an :class:`ObjectHandle` (``bpf``) does alike: stop it, and
    list its programs for the runtime's per-program statistics (config ``bpfStats``) and their
    recursion misses (always)."""

    bpf: ObjectHandle

    def stop(self) -> None:
        self.bpf.stop()

    def bpf_programs(self) -> dict[str, int]:
        return self.bpf.programs()

    def bpf_costs(self) -> dict[str, tuple[int, int]]:
        return self.bpf.costs()

    def bpf_misses(self) -> dict[str, int]:
        return self.bpf.misses()


class TupleCounts:
    """A probe's counts per tuple (``bpf/include/tuples.bpf.h``, map ``name`` and its
    ``<name>_inserted``), read as node-scope samples of a compat-only ``instrument``, and how many
    tuples its LRU has evicted (inserts less the entries found)."""

    def __init__(self, bpf: ObjectHandle, name: str, instrument: InstrumentSpec) -> None:
        self.bpf = bpf
        self.name = name
        self.instrument = instrument
        self.evicted = 0

    def samples(self) -> list[Sample]:
        entries = self.bpf.map(self.name).items()
        inserted = self.bpf.map(f"{self.name}_inserted").lookup(0) or 0
        self.evicted = max(self.evicted, inserted - len(entries))
        out = [Sample(self.instrument, value, None, tuple_attributes(key)) for key, value in entries]
        out.append(Sample(I.AGENT_BPF_MAP_EVICTED, self.evicted, None,
                          ((A.PROBE, self.bpf.ctx.name), (A.BPF_MAP, self.name))))
        return out


class Counters:
    """The ``counters`` of a counting probe's object (``DECLARE_COUNTERS``,
    ``bpf/include/maps.bpf.h``), read through its handle."""

    def __init__(self, bpf: ObjectHandle) -> None:
        self.bpf = bpf
        self._reconciler: NetnsReconciler[tuple[Any, int]] = NetnsReconciler(
            lambda item: (item[0].netns, item[0].netns_cookie))

    def read(self) -> dict[int | None, dict[tuple[Any, ...], int]]:
        """``{netns or None: {key fields but the namespace's: value}}`` of the namespaces to report;
        the keys of dead ones are deleted from the map."""
        counters = self.bpf.map(COUNTERS_MAP)
        verdict = self._reconciler.reconcile(counters.items(), self.bpf.ctx.cycle.namespaces)
        for key, _ in verdict.gone:
            counters.delete(key)
        if verdict.gone:
            log.debug("%s: deleted %d counters of namespaces that are gone", self.bpf.spec.name,
                      len(verdict.gone))
        out: dict[int | None, dict[tuple[Any, ...], int]] = {}
        for (key, value), netns in verdict.live:
            fields = tuple(getattr(key, name) for name, *_ in key._fields_
                           if name not in ("netns", "netns_cookie"))
            out.setdefault(netns, {})[fields] = value
        return out

    def self_samples(self) -> list[Sample]:
        """The map's fill (``kubeskoop.agent.bpf.map.full``) and the event losses."""
        return [self.bpf.full_sample(COUNTERS_FULL_MAP, COUNTERS_MAP), *self.bpf.loss_samples()]

