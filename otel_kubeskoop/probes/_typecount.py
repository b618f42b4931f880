# SPDX-License-Identifier: Apache-2.0
"""The probes that count kernel events by type per namespace and send them one by one (tcpreset,
tcpretrans): one shape, each probe a :class:`Typecount` table.

Their objects share ``bpf/include/typecount.bpf.h``: ``counters`` keyed by ``struct
typecount_key`` (namespace, type), and one ring-buffer record per event, whose header carries the
type and the socket's TCP state and whose first member after it is the connection's
``struct flow_tuple``. A probe's table says which object, which counter and attribute, and per
type its word and event; :class:`TypecountProbe` does the rest.
"""

from __future__ import annotations

import ctypes
import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from otel_kubeskoop.bpf.records import DecodeError, RecordLayout
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Event, ProbeContext, Sample
from otel_kubeskoop.probes._bpf import (
    Counters,
    HandleProbe,
    ObjectHandle,
    RingEventArgs,
    TupleCounts,
    event_ring,
)
from otel_kubeskoop.probes._decode import MAX_CACHED_WORDS, KernelNames, TupleWords, kernel_names, new_event
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

__all__ = ["Typecount", "TypecountProbe"]


def _nothing(value: Any, names: KernelNames) -> Iterable[tuple[str, Any]]:
    return ()


@functools.cache
def _layout(record: type[ctypes.Structure]) -> RecordLayout:
    return RecordLayout(record)


@dataclass(frozen=True)
class Typecount:
    """One counting-by-type probe: its ``object`` and ``record`` (``struct <probe>_event``), the
    ``instrument`` counting it by ``attribute``, and per type (the object's enum value) the word
    that attribute takes and the event sent. ``extra(value, names)``: attributes a record adds
    after the type, from the value of its field ``extra_field``. ``tuples``: the compat-only
    instrument of the object's per-tuple counts (map ``tuples``, ``bpf/include/tuples.bpf.h``),
    if it keeps them."""

    object: ObjectSpec
    record: type[ctypes.Structure]
    instrument: InstrumentSpec
    attribute: str
    types: Mapping[int, tuple[str, EventSpec]]
    extra: Callable[[Any, KernelNames], Iterable[tuple[str, Any]]] = _nothing
    extra_field: str = ""
    tuples: InstrumentSpec | None = None

    def word(self, kind: int) -> str:
        """The attribute's value for a type; ``unknown:<value>`` for one this agent does not know."""
        known = self.types.get(kind)
        return known[0] if known is not None else f"unknown:{kind}"

    def decode(self, raw: bytes, names: KernelNames, clock_offset_ns: int = 0) -> Event:
        """One record as an Event. Pure: kernel names are passed in."""
        return TypecountDecoder(self, names).decode(raw, clock_offset_ns)

    def samples(self, counts: Mapping[int | None, Mapping[tuple[Any, ...], int]]) -> list[Sample]:
        """Samples of the counters, ``{netns or None: {(type,): value}}``."""
        return [Sample(self.instrument, value, netns, ((self.attribute, self.word(kind)),))
                for netns, keys in counts.items() for (kind,), value in keys.items()]


class TypecountDecoder:
    """Decodes one probe's records: one ``struct`` unpack each (``bpf/records.py``), attribute pairs
    built once per distinct value (:class:`TupleWords`; per type; per ``extra_field`` value). Its
    caches hold only what the raw values and the kernel's names determine, never a pod's identity
    (the emitter asks the resource directory for it with every batch), so nothing in them goes
    stale when a pod is relabelled or renamed."""

    def __init__(self, table: Typecount, names: KernelNames) -> None:
        self.table = table
        self.names = names
        self.layout = _layout(table.record)
        index = self.layout.index
        self._fields = operator.itemgetter(*(index[f] for f in (
            "hdr.ts_ns", "hdr.netns", "hdr.type", "hdr.aux", "tuple.family", "tuple.protocol",
            "tuple.saddr", "tuple.daddr", "tuple.sport", "tuple.dport")))
        self._extra_at = index[table.extra_field] if table.extra_field else None
        self._words = TupleWords(names)
        self._types = {kind: (spec.name, spec.upstream_type, ((table.attribute, word),))
                       for kind, (word, spec) in table.types.items()}
        self._extras: dict[Any, tuple[tuple[str, Any], ...]] = {}

    def decode(self, raw: bytes, clock_offset_ns: int) -> Event:
        """One record as an Event, at its ``bpf_ktime_get_ns()`` plus ``clock_offset_ns``;
        DecodeError for a record of the wrong size or an unknown type."""
        f = self.layout.unpack(raw)
        ts, netns, kind, state, family, protocol, saddr, daddr, sport, dport = self._fields(f)
        known = self._types.get(kind)
        if known is None:
            raise DecodeError(f"{self.table.object.name}: unknown event type {kind}")
        name, upstream_type, word = known
        tail = word if self._extra_at is None else (*word, *self._extra(f[self._extra_at]))
        attrs = self._words.connection(family, protocol, saddr, daddr, sport, dport, state, tail)
        return new_event(name, upstream_type, netns or None, attrs, "", ts + clock_offset_ns)

    def _extra(self, value: Any) -> tuple[tuple[str, Any], ...]:
        hit = self._extras.get(value)
        if hit is None:
            if len(self._extras) >= MAX_CACHED_WORDS:
                self._extras.clear()
            hit = self._extras[value] = tuple(self.table.extra(value, self.names))
        return hit


class TypecountProbe(HandleProbe):
    """Loads a counting-by-type object, reads its counters, pumps its events; ``TABLE`` says
    which."""

    TABLE: ClassVar[Typecount]

    def __init__(self, args: RingEventArgs | None, ctx: ProbeContext) -> None:
        self.table = self.TABLE
        self.args = args if args is not None else RingEventArgs()
        self.names = KernelNames()
        self.decoder = TypecountDecoder(self.table, self.names)
        self.bpf = ObjectHandle(self.table.object, ctx, self.decode)
        self.counters = Counters(self.bpf)
        self.tuples = (TupleCounts(self.bpf, "tuples", self.table.tuples)
                       if self.table.tuples is not None else None)

    def start(self) -> None:
        self.names = kernel_names()
        self.decoder = TypecountDecoder(self.table, self.names)
        self.bpf.start(events=self.args, max_entries=event_ring(self.bpf.ctx, self.args))

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None:
            return []
        out = self.table.samples(self.counters.read()) + self.counters.self_samples()
        if self.tuples is not None:  # upstream's per-connection view, for the compat endpoint
            out += self.tuples.samples()
        return out

    def decode(self, raw: bytes) -> Event:
        return self.decoder.decode(raw, self.bpf.clock_offset)
