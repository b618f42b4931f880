# SPDX-License-Identifier: Apache-2.0
"""Fakes for the latency probes' unit tests: a loaded object's maps, and kernel feature sets."""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.bpf.layouts import InflightStat, LatencyHist
from otel_kubeskoop.bpf.loader import AttachPoint
from tests.unit.probes.bpfdumps import FakeMap, FakeObject


def hist(slots: dict[int, int], sum_ns: int = 0, slow: tuple[int, int] = (0, 0)) -> LatencyHist:
    """A ``struct latency_hist`` with ``slots`` {slot: count}."""
    h = LatencyHist()
    for slot, n in slots.items():
        h.slots[slot] = n
    h.sum_ns = sum_ns
    h.slow[0], h.slow[1] = slow
    return h


def latency_object(hists: list[tuple[Any, Any]],
                   inflight: dict[InflightStat, int] | None = None,
                   full: int = 0, losses: tuple[int, int] = (0, 0)) -> FakeObject:
    """A loaded latency probe object as its maps show it."""
    maps = {
        "hists": FakeMap(hists),
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
