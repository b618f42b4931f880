# SPDX-License-Identifier: Apache-2.0
"""Ring-buffer reads in batches, straight from the ring's memory (``bpf/ringmem.py``) and through
libbpf's consumer, on the real kernel with the selftest object: a ring of one page, filled and
wrapped many times over, gives every record exactly once, each whole, and what did not fit is
counted by the kernel (delivered + ring_buffer_full = what the programs counted)."""

from __future__ import annotations

import ctypes
import mmap
import platform

import pytest

from otel_kubeskoop.bpf import ringmem
from otel_kubeskoop.bpf.generated.selftest import SelftestEvent
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.bpf.ringbuf import RingBuffer
from otel_kubeskoop.bpf.selftest import EVENTS_MAP, LOSSES_MAP, open_selftest
from tests.privileged.bpf.conftest import counts_by_key, drain
from tests.privileged.netnsutil import netns, require_root, tcp_refused

require_root()

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("kernel_btf")]

ROUNDS, CONNECTS = 12, 15  # each round about 40 records of 88 bytes: more than a page of ring


@pytest.mark.parametrize("direct", [
    pytest.param(True, marks=pytest.mark.skipif(
        not ringmem.SUPPORTED, reason=f"no acquire/release ordering of plain loads and stores on "
                                      f"{platform.machine()}: direct ring reads need x86-64's (ringmem.py)")),
    False,
], ids=["memory", "libbpf"])
def test_batches_give_every_record_once_across_wraps(selftest_path: str, direct: bool) -> None:
    with netns() as ns:
        obj = open_selftest(rodata={"targ_netns": ns.inode}, max_entries={EVENTS_MAP: mmap.PAGESIZE},
                            path=selftest_path)
        obj.start()
        batches: list[list[bytes]] = []
        ring = RingBuffer(EVENTS_MAP, obj.map(EVENTS_MAP).fd, batches.append, batch=True, direct=direct)
        try:
            assert ring.direct is direct
            for _ in range(ROUNDS):
                tcp_refused(ns, CONNECTS)
                drain(ring)
            records = [raw for batch in batches for raw in batch]
            losses = dict(obj.map(LOSSES_MAP, ctypes.c_uint32, ctypes.c_uint64).items())
            seen = counts_by_key(obj).total()
        finally:
            ring.close()
            obj.close()
    assert ring.closed and ring.errors == 0
    assert seen >= ROUNDS * CONNECTS * 2  # a reset and at least one drop per connect
    assert sum(len(raw) for raw in records) > 4 * mmap.PAGESIZE, "the ring wrapped several times"
    assert len(records) + losses[0] == seen and losses[1] == 0
    assert ring.received == len(records)
    events = [decode_exact(SelftestEvent, raw) for raw in records]
    assert {e.hdr.netns for e in events} == {ns.inode}
    assert len(set(records)) == len(records), "a record was read twice (each has its own ns timestamp)"


def test_a_closed_ring_refuses_reads(selftest_path: str) -> None:
    with netns() as ns:
        obj = open_selftest(rodata={"targ_netns": ns.inode}, path=selftest_path)
        obj.start()
        ring = RingBuffer(EVENTS_MAP, obj.map(EVENTS_MAP).fd, lambda batch: None, batch=True)
        ring.close()
        ring.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            ring.consume()
        obj.close()
