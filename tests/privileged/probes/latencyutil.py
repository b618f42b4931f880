# SPDX-License-Identifier: Apache-2.0
"""Helpers for the eBPF probes' privileged tests: attach kinds, latency histograms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_kubeskoop.bpf.attach import AttachKind, AttachPoint
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.probe import Histogram
from otel_kubeskoop.probes._latency import BOUNDS

#: the attach kinds a test runs a probe with: BTF tracepoints (what the loader picks on a BTF
#: kernel) and classic tracepoints (what it falls back to without them)
KINDS = ("tp_btf", "tracepoint")


class OnlyKind:
    """The running kernel's features, with every attach kind but one refused."""

    def __init__(self, kind: str) -> None:
        self.kind = AttachKind(kind)
        self.base = KernelFeatures()

    def unavailable(self, point: AttachPoint) -> str | None:
        if point.kind is not self.kind:
            return f"not {self.kind} (test)"
        return self.base.unavailable(point)


def with_kind(factory: Callable[[Any, Any], Any], kind: str) -> Callable[[Any, Any], Any]:
    """``factory`` (an eBPF probe's) made to attach with ``kind`` only."""

    def make(args: Any, ctx: Any) -> Any:
        probe = factory(args, ctx)
        probe.bpf.features = OnlyKind(kind)
        return probe

    return make


def count(h: Histogram | None) -> int:
    return sum(h.counts) if h is not None else 0


def at_least(h: Histogram | None, seconds: float) -> int:
    """Intervals in buckets whose lower bound is at least ``seconds``."""
    if h is None:
        return 0
    lower = (0.0, *BOUNDS)
    return sum(c for low, c in zip(lower, h.counts) if low >= seconds)


def below(h: Histogram | None, seconds: float) -> int:
    """Intervals in buckets whose upper bound is at most ``seconds``."""
    if h is None:
        return 0
    return sum(c for up, c in zip(BOUNDS, h.counts) if up <= seconds)


def minus(after: Histogram | None, before: Histogram | None) -> Histogram | None:
    """The increase of a cumulative histogram between two collections."""
    if after is None:
        return None
    if before is None:
        return after
    counts = tuple(a - b for a, b in zip(after.counts, before.counts))
    total = None if after.sum is None or before.sum is None else after.sum - before.sum
    return Histogram(after.bounds, counts, total)


def value(series: dict[Any, Any], attributes: dict[str, Any]) -> Any:
    """The one value of ``series`` ({attrs: value}) whose attributes include ``attributes``."""
    wanted = set(attributes.items())
    found = [v for attrs, v in series.items() if wanted <= set(attrs)]
    assert len(found) <= 1, f"{len(found)} series match {attributes}"
    return found[0] if found else None
