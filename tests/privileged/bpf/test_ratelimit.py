# SPDX-License-Identifier: Apache-2.0
"""Loss accounting of events.bpf.h: every event the kernel saw is delivered or counted.

delivered + losses[RATE_LIMITED] + losses[RINGBUF_FULL] == events counted in the kernel
"""

from __future__ import annotations

import ctypes
import time

import pytest

from otel_kubeskoop.bpf.generated.common import EventLossReason
from otel_kubeskoop.bpf.generated.selftest import SelftestEvent, SelftestEventType
from otel_kubeskoop.bpf.records import decode
from otel_kubeskoop.bpf.selftest import EVENTS_MAP, LOSSES_MAP, open_selftest
from tests.privileged.bpf.conftest import counts_by_key, drain
from tests.privileged.netnsutil import netns, require_root, tcp_refused

require_root()

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("kernel_btf")]

N = 300
RATE_LIMITED = EventLossReason.EVENT_LOSS_RATE_LIMITED
RINGBUF_FULL = EventLossReason.EVENT_LOSS_RINGBUF_FULL


def run(selftest_path: str, rodata: dict[str, int], ring_bytes: int | None = None):
    """Trigger N connects in a fresh namespace; poll only afterwards. Returns what was seen."""
    with netns() as ns:
        max_entries = {EVENTS_MAP: ring_bytes} if ring_bytes else None
        obj = open_selftest(
            rodata={"targ_netns": ns.inode, **rodata}, max_entries=max_entries, path=selftest_path
        )
        with obj:
            obj.start()
            records: list[bytes] = []
            ring = obj.ringbuf(EVENTS_MAP, records.append)
            began = time.monotonic()
            tcp_refused(ns, N)
            elapsed = time.monotonic() - began
            drain(ring)
            counts = counts_by_key(obj)
            losses = {
                EventLossReason(k): v
                for k, v in obj.map(LOSSES_MAP, ctypes.c_uint32, ctypes.c_uint64).items()
            }
        delivered = [decode(SelftestEvent, r) for r in records]
        return ns.inode, counts, losses, delivered, elapsed


def test_rate_limit_counts_every_refused_event(selftest_path: str) -> None:
    burst, rate = 10, 1
    inode, counts, losses, delivered, elapsed = run(
        selftest_path, {"targ_burst": burst, "targ_rate_per_sec": rate}
    )
    assert counts[(inode, SelftestEventType.SELFTEST_EVENT_RESET)] == N
    assert len(delivered) + losses[RATE_LIMITED] + losses[RINGBUF_FULL] == counts.total()
    assert losses[RINGBUF_FULL] == 0
    for event_type in SelftestEventType:  # one bucket per (netns, type)
        sent = sum(1 for e in delivered if e.hdr.type == event_type)
        assert burst <= sent <= burst + rate * (elapsed + 1) + 1, event_type.name
    assert losses[RATE_LIMITED] >= counts.total() - 2 * (burst + rate * (elapsed + 1) + 1)


def test_full_ring_buffer_counts_every_failed_reservation(selftest_path: str) -> None:
    # One page of ring buffer (the minimum) and nobody reading while the events come.
    inode, counts, losses, delivered, _ = run(
        selftest_path, {"targ_rate_per_sec": 0}, ring_bytes=4096
    )
    assert counts[(inode, SelftestEventType.SELFTEST_EVENT_RESET)] == N
    assert losses[RATE_LIMITED] == 0
    assert losses[RINGBUF_FULL] > 0
    record = ctypes.sizeof(SelftestEvent) + 8  # each record has an 8-byte ring-buffer header
    assert len(delivered) == 4096 // record
    assert len(delivered) + losses[RINGBUF_FULL] == counts.total()
