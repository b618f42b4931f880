# SPDX-License-Identifier: Apache-2.0
"""The selftest object (``bpf/selftest.bpf.c``): its maps, and a node check.

Not a probe: it exercises the whole BPF path (attach plans, rodata, per-CPU hash, ring buffer,
rate limit) so that tests, and ``otel-kubeskoop doctor`` on a node, can tell the machinery works.
Its attach plans, maps and settings are those of its generated spec
(``otel_kubeskoop/bpf/generated/selftest.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_kubeskoop.bpf.attach import Features
from otel_kubeskoop.bpf.generated.selftest import OBJECT
from otel_kubeskoop.bpf.loader import BPFObject, Setting

__all__ = ["COUNTS_MAP", "EVENTS_MAP", "LOSSES_MAP", "RATELIMIT_MAP", "check", "open_selftest"]

COUNTS_MAP = "counts"  # PERCPU_HASH selftest_key -> u64
EVENTS_MAP = "events"  # RINGBUF of selftest_event (events.bpf.h)
LOSSES_MAP = "losses"  # PERCPU_ARRAY event_loss_reason -> u64 (events.bpf.h)
RATELIMIT_MAP = "ratelimit"  # LRU_HASH (ratelimit.bpf.h)


def open_selftest(
    rodata: Mapping[str, Setting] | None = None,
    max_entries: Mapping[str, int] | None = None,
    path: str | None = None,
    features: Features | None = None,
) -> BPFObject:
    """A :class:`BPFObject` for the selftest object, not yet opened."""
    return BPFObject.of(OBJECT, rodata=rodata, max_entries=max_entries, features=features, path=path)


def check() -> str:
    """Load and attach the selftest object, then detach: one line saying what was used.

    Raises :class:`~otel_kubeskoop.probe.Unavailable` (with libbpf's words) when it cannot.
    """
    with open_selftest() as obj:
        obj.start()
        points = ", ".join(f"{hook}: {point}" for hook, point in obj.chosen.items())
        total = sum(obj.timings.values())
        return f"selftest loaded and attached in {total * 1000:.0f} ms ({points})"
