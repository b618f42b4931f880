# SPDX-License-Identifier: Apache-2.0
"""Token buckets per (namespace, event type) for the events user space makes (conntrack's from
netlink, dns' timeouts from its sweep): the kernel's rule for the events of BPF probes
(bpf/include/ratelimit.bpf.h), ``rate`` per second in bursts of ``burst``; rate 0: no limit."""

from __future__ import annotations

from collections.abc import Collection, Hashable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, max(burst, 1)
        self._buckets: dict[tuple[int, Hashable], tuple[float, float]] = {}  # -> (tokens, last)
        self.refused = 0

    def keys(self) -> Collection[tuple[int, Hashable]]:
        return self._buckets.keys()

    def allow(self, netns: int, kind: Hashable, now: float) -> bool:
        """Take a token from (netns, kind)'s bucket, refilled since its last use; False (counted
        in :attr:`refused`) when it has none."""
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.get((netns, kind), (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._buckets[(netns, kind)] = (tokens - 1.0 if ok else tokens, now)
        self.refused += not ok
        return ok

    def forget(self, live: Collection[int]) -> None:
        """Drop the buckets of namespaces not in ``live`` (gone)."""
        self._buckets = {k: v for k, v in self._buckets.items() if k[0] in live}

    def drop(self, netns: int) -> None:
        """Drop one namespace's buckets."""
        for key in [k for k in self._buckets if k[0] == netns]:
            del self._buckets[key]
