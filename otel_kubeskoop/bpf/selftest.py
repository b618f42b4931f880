# SPDX-License-Identifier: Apache-2.0
"""The selftest object (``bpf/selftest.bpf.c``): attach plans, names, and a node check.

Not a probe: it exercises the whole BPF path (attach plans, rodata, per-CPU hash, ring buffer,
rate limit) so that tests, and ``otel-kubeskoop doctor`` on a node, can tell the machinery works.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_kubeskoop.bpf.loader import AttachPlan, BPFObject, Features, Setting
from otel_kubeskoop.bpf.objects import object_path

__all__ = [
    "COUNTS_MAP",
    "EVENTS_MAP",
    "LOSSES_MAP",
    "OBJECT",
    "PLANS",
    "RATELIMIT_MAP",
    "RODATA",
    "check",
    "open_selftest",
]

OBJECT = "selftest"

PLANS = (
    AttachPlan.of(
        "reset",
        ("selftest_reset_btf", "tp_btf", "tcp_receive_reset"),
        ("selftest_reset_tp", "tracepoint", "tcp/tcp_receive_reset"),
        ("selftest_reset_fentry", "fentry", "tcp_reset"),
        ("selftest_reset_kprobe", "kprobe", "tcp_reset"),
    ),
    AttachPlan.of(
        "drop",
        ("selftest_drop_btf", "tp_btf", "kfree_skb"),
        ("selftest_drop_tp", "tracepoint", "skb/kfree_skb"),
    ),
)

COUNTS_MAP = "counts"  # PERCPU_HASH selftest_key -> u64
EVENTS_MAP = "events"  # RINGBUF of selftest_event (events.bpf.h)
LOSSES_MAP = "losses"  # PERCPU_ARRAY event_loss_reason -> u64 (events.bpf.h)
RATELIMIT_MAP = "ratelimit"  # LRU_HASH (ratelimit.bpf.h)

#: const volatile settings and their meaning
RODATA = {
    "targ_netns": "count and emit events of this network namespace inode only; 0: all",
    "targ_emit": "false: count only, no ring-buffer events",
    "targ_rate_per_sec": "events per second per (netns, type) bucket; 0: no rate limit",
    "targ_burst": "bucket capacity",
}


def open_selftest(
    rodata: Mapping[str, Setting] | None = None,
    max_entries: Mapping[str, int] | None = None,
    path: str | None = None,
    plans: tuple[AttachPlan, ...] = PLANS,
    features: Features | None = None,
) -> BPFObject:
    """A :class:`BPFObject` for the selftest object, not yet opened."""
    return BPFObject(
        path or object_path(OBJECT),
        plans,
        rodata=rodata,
        max_entries=max_entries,
        features=features,
    )


def check() -> str:
    """Load and attach the selftest object, then detach: one line saying what was used.

    Raises :class:`~otel_kubeskoop.probe.Unavailable` (with libbpf's words) when it cannot.
    """
    with open_selftest() as obj:
        obj.start()
        points = ", ".join(f"{hook}: {point}" for hook, point in obj.chosen.items())
        total = sum(obj.timings.values())
        return f"selftest loaded and attached in {total * 1000:.0f} ms ({points})"
