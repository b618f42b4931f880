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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from otel_kubeskoop.bpf.records import DecodeError, decode_exact
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Event, ProbeContext, Sample
from otel_kubeskoop.probes._bpf import (
    Counters,
    EventArgs,
    HandleProbe,
    ObjectHandle,
    TupleCounts,
    small_ring_without_events,
)
from otel_kubeskoop.probes._decode import (
    KernelNames,
    connection_attributes,
    kernel_names,
    record_event,
)
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

__all__ = ["Typecount", "TypecountProbe"]


def _nothing(record: Any, names: KernelNames) -> Iterable[tuple[str, Any]]:
    return ()


@dataclass(frozen=True)
class Typecount:
    """One counting-by-type probe: its ``object`` and ``record`` (``struct <probe>_event``), the
    ``instrument`` counting it by ``attribute``, and per type (the object's enum value) the word
    that attribute takes and the event sent. ``extra(record, names)``: attributes a record adds
    after the type. ``tuples``: the compat-only instrument of the object's per-tuple counts (map
    ``tuples``, ``bpf/include/tuples.bpf.h``), if it keeps them."""

    object: ObjectSpec
    record: type[ctypes.Structure]
    instrument: InstrumentSpec
    attribute: str
    types: Mapping[int, tuple[str, EventSpec]]
    extra: Callable[[Any, KernelNames], Iterable[tuple[str, Any]]] = _nothing
    tuples: InstrumentSpec | None = None

    def word(self, kind: int) -> str:
        """The attribute's value for a type; ``unknown:<value>`` for one this agent does not know."""
        known = self.types.get(kind)
        return known[0] if known is not None else f"unknown:{kind}"

    def decode(self, raw: bytes, names: KernelNames, clock_offset_ns: int = 0) -> Event:
        """One record as an Event. Pure: kernel names are passed in."""
        rec: Any = decode_exact(self.record, raw)
        known = self.types.get(rec.hdr.type)
        if known is None:
            raise DecodeError(f"{self.object.name}: unknown event type {rec.hdr.type}")
        word, spec = known
        attrs = connection_attributes(rec.tuple, names, rec.hdr.aux)
        attrs.append((self.attribute, word))
        attrs += self.extra(rec, names)
        return record_event(spec, rec.hdr, attrs, clock_offset_ns)

    def samples(self, counts: Mapping[int | None, Mapping[tuple[Any, ...], int]]) -> list[Sample]:
        """Samples of the counters, ``{netns or None: {(type,): value}}``."""
        return [Sample(self.instrument, value, netns, ((self.attribute, self.word(kind)),))
                for netns, keys in counts.items() for (kind,), value in keys.items()]


class TypecountProbe(HandleProbe):
    """Loads a counting-by-type object, reads its counters, pumps its events; ``TABLE`` says
    which."""

    TABLE: ClassVar[Typecount]

    def __init__(self, args: EventArgs | None, ctx: ProbeContext) -> None:
        self.table = self.TABLE
        self.args = args if args is not None else EventArgs()
        self.names = KernelNames()
        self.bpf = ObjectHandle(self.table.object, ctx, self.decode)
        self.counters = Counters(self.bpf)
        self.tuples = (TupleCounts(self.bpf, "tuples", self.table.tuples)
                       if self.table.tuples is not None else None)

    def start(self) -> None:
        self.names = kernel_names()
        self.bpf.start(events=self.args, max_entries=small_ring_without_events(self.bpf.ctx))

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None:
            return []
        out = self.table.samples(self.counters.read()) + self.counters.self_samples()
        if self.tuples is not None:  # upstream's per-connection view, for the compat endpoint
            out += self.tuples.samples()
        return out

    def decode(self, raw: bytes) -> Event:
        return self.table.decode(raw, self.names, self.bpf.clock_offset)
