# SPDX-License-Identifier: Apache-2.0
"""Fakes for the latency probes' unit tests: a loaded object's maps, and kernel feature sets."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.bpf.generated.common import HistSlotState, InflightStat, LatencyHist
from tests.unit.probes.bpfdumps import FakeMap, FakeObject


def hist(slots: dict[int, int], sum_ns: int = 0, slow: tuple[int, int] = (0, 0)) -> LatencyHist:
    """A ``struct latency_hist`` with ``slots`` {slot: count}."""
    h = LatencyHist()
    for slot, n in slots.items():
        h.slots[slot] = n
    h.sum_ns = sum_ns
    h.slow[0], h.slow[1] = slow
    return h


class FakeHists:
    """A ``hists`` table as a loaded object maps it: slots in a buffer, the given entries first,
    as many free slots after them. ``slot_type`` is set by the first ``BPFObject.map()`` call."""

    def __init__(self, entries: list[tuple[Any, Any]]) -> None:
        self.entries = entries
        self.value_type: type[ctypes.Structure] | None = None
        self.buf = bytearray()

    def typed(self, key_type: Any, value_type: type[ctypes.Structure]) -> FakeHists:
        if self.value_type is None:
            self.value_type = value_type
            size = ctypes.sizeof(value_type)
            self.buf = bytearray(size * max(8, 2 * len(self.entries)))
            for i, (key, value) in enumerate(self.entries):
                slot = value_type(HistSlotState.HIST_READY, key, value)
                self.buf[i * size:(i + 1) * size] = bytes(slot)
        return self

    @contextmanager
    def mapped(self) -> Iterator[memoryview]:
        with memoryview(self.buf) as view:
            yield view

    def _slots(self, state: HistSlotState) -> list[Any]:
        if self.value_type is None:
            return []
        size = ctypes.sizeof(self.value_type)
        slots = (self.value_type.from_buffer_copy(self.buf, i) for i in range(0, len(self.buf), size))
        return [slot for slot in slots if slot.state == state]

    @property
    def deleted(self) -> list[Any]:
        """Keys whose slots the probe freed."""
        return [slot.key for slot in self._slots(HistSlotState.HIST_DELETED)]

    def items(self) -> list[tuple[Any, Any]]:
        return [(slot.key, slot.value) for slot in self._slots(HistSlotState.HIST_READY)]


def latency_object(hists: list[tuple[Any, Any]],
                   inflight: dict[InflightStat, int] | None = None,
                   full: int = 0, losses: tuple[int, int] = (0, 0)) -> FakeObject:
    """A loaded latency probe object as its maps show it."""
    maps = {
        "hists": FakeHists(hists),
        "hists_full": FakeMap({0: full}),
        "inflight_stats": FakeMap({int(k): v for k, v in (inflight or {}).items()}),
        "losses": FakeMap({0: losses[0], 1: losses[1]}),
    }
    return FakeObject(maps)


class Features:
    """A kernel feature set: the attach points that can be tried; ``why`` for the others."""

    def __init__(self, *available: str, why: str = "not in this kernel") -> None:
        self.available = set(available)
        self.why = why

    def unavailable(self, point: AttachPoint) -> str | None:
        return None if point.section in self.available else self.why


def samples_by_key(samples: list[Any]) -> dict[tuple[str, int | None, tuple[Any, ...]], Any]:
    out: dict[tuple[str, int | None, tuple[Any, ...]], Any] = {}
    for s in samples:
        key = (s.instrument.name, s.netns, s.attributes)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    return out
