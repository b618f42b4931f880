# SPDX-License-Identifier: Apache-2.0
"""The loader on the real kernel, with the selftest object: attach plans, settings, maps, ring
buffer, failures and the lifecycle. Events are made in throw-away network namespaces by TCP
connects to a closed port on loopback: each fires tcp_receive_reset once (the RST reaches the
connecting socket in SYN_SENT) and kfree_skb at least once (the SYN, SKB_DROP_REASON_NO_SOCKET).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time

import pytest

from otel_kubeskoop.bpf import btf
from otel_kubeskoop.bpf.attach import AttachPlan, AttachPoint, plans
from otel_kubeskoop.bpf.generated.selftest import (
    OBJECT,
    SelftestEvent,
    SelftestEventType,
    SelftestKey,
)
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.bpf.records import decode, ktime_to_unix_ns
from otel_kubeskoop.bpf.selftest import COUNTS_MAP, EVENTS_MAP, LOSSES_MAP, open_selftest
from otel_kubeskoop.probe import Unavailable
from tests.privileged.bpf.conftest import counts_by_key, drain
from tests.privileged.netnsutil import netns, require_root, tcp_refused

require_root()

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("kernel_btf")]

RESET = SelftestEventType.SELFTEST_EVENT_RESET
DROP = SelftestEventType.SELFTEST_EVENT_DROP
PLANS = plans(OBJECT)
TP_BTF = {
    "reset": AttachPoint("tp_btf", "tcp_receive_reset"),
    "drop": AttachPoint("tp_btf", "kfree_skb"),
}
TRACEPOINTS = tuple(
    AttachPlan(p.hook, tuple(c for c in p.candidates if c.point.kind == "tracepoint"))
    for p in PLANS
)


def kernel_has_kprobes() -> bool:
    return os.path.exists("/sys/bus/event_source/devices/kprobe") or os.path.exists(
        "/sys/kernel/tracing/kprobe_events"
    )


def test_lifecycle_on_btf_tracepoints(selftest_path: str) -> None:
    with netns() as ns:
        obj = open_selftest(rodata={"targ_netns": ns.inode}, path=selftest_path)
        began = time.perf_counter()
        obj.start()
        elapsed = time.perf_counter() - began
        print(f"selftest open -> attached in {elapsed * 1000:.1f} ms: {obj.timings}")
        # tp_btf is first in both plans and this kernel has BTF: never fentry or kprobe.
        assert obj.chosen == TP_BTF
        assert obj.rejected == {}
        assert obj.state == "attached"

        records: list[bytes] = []
        ring = obj.ringbuf(EVENTS_MAP, records.append)
        tcp_refused(ns, 3)
        drain(ring)

        counts = counts_by_key(obj)
        assert {netns_inode for netns_inode, _ in counts} == {ns.inode}
        assert counts[(ns.inode, RESET)] == 3
        assert counts[(ns.inode, DROP)] >= 3
        assert len(records) == counts.total()
        assert ring.received == len(records) and ring.errors == 0

        events = [decode(SelftestEvent, raw) for raw in records]
        assert all(e.hdr.netns == ns.inode for e in events)
        now = time.time_ns()
        assert all(abs(ktime_to_unix_ns(e.hdr.ts_ns) - now) < 30e9 for e in events)
        syn_sent = {v: k for k, v in btf.tcp_states().items()}["TCP_SYN_SENT"]
        resets = [e for e in events if e.hdr.type == RESET]
        assert len(resets) == 3
        for e in resets:
            assert (e.family, e.dport, e.hdr.aux) == (2, 9, syn_sent)
            assert bytes(e.saddr[:4]) == bytes(e.daddr[:4]) == bytes([127, 0, 0, 1])
            assert bytes(e.saddr[4:]) == bytes(12)  # nothing past the IPv4 address
            assert e.sport > 1024 and e.comm.startswith(b"python")
        reasons = btf.skb_drop_reasons()
        drops = [reasons.get(e.drop_reason) for e in events if e.hdr.type == DROP]
        assert drops.count("SKB_DROP_REASON_NO_SOCKET") >= 3

        losses = obj.map(LOSSES_MAP, ctypes.c_uint32, ctypes.c_uint64)
        assert dict(losses.items()) == {0: 0, 1: 0}

        obj.close()
        obj.close()  # idempotent
        assert obj.state == "closed" and ring.closed
        with pytest.raises(RuntimeError, match="closed"):
            ring.poll(0)


def test_counts_pop_all_batch_and_per_element(selftest_path: str) -> None:
    with (
        netns() as ns,
        open_selftest(
            rodata={"targ_netns": ns.inode, "targ_emit": False}, path=selftest_path
        ) as obj,
    ):
        obj.start()
        for batch in (True, False):
            tcp_refused(ns, 2)
            per_cpu = obj.map(COUNTS_MAP, SelftestKey, ctypes.c_uint64, percpu="list", batch=batch)
            items = {(k.netns, k.type): v for k, v in per_cpu.items()}
            assert len(items[(ns.inode, RESET)]) == per_cpu.ncpus >= 1
            assert sum(items[(ns.inode, RESET)]) == 2
            assert per_cpu.lookup(SelftestKey(ns.inode, RESET)) == items[(ns.inode, RESET)]

            counts = obj.map(COUNTS_MAP, SelftestKey, ctypes.c_uint64, batch=batch)
            popped = {(k.netns, k.type): v for k, v in counts.pop_all()}
            assert popped[(ns.inode, RESET)] == 2  # summed over CPUs
            assert counts.items() == []  # reset: the kernel counts from zero again
        assert counts.lookup(SelftestKey(ns.inode, RESET)) is None
        assert not counts.delete(SelftestKey(ns.inode, RESET))
        with pytest.raises(TypeError, match="pop_all needs a hash map"):
            obj.map(LOSSES_MAP).pop_all()


def test_rodata_filters_by_namespace_and_turns_events_off(selftest_path: str) -> None:
    with netns() as a, netns() as b:
        # Two objects loaded at once from one file, with different settings.
        only_a = open_selftest(rodata={"targ_netns": a.inode}, path=selftest_path)
        only_b_quiet = open_selftest(
            rodata={"targ_netns": b.inode, "targ_emit": False}, path=selftest_path
        )
        with only_a, only_b_quiet:
            only_a.start()
            only_b_quiet.start()
            ring_a: list[bytes] = []
            ring_b: list[bytes] = []
            ra = only_a.ringbuf(EVENTS_MAP, ring_a.append)
            rb = only_b_quiet.ringbuf(EVENTS_MAP, ring_b.append)
            tcp_refused(a, 2)
            tcp_refused(b, 4)
            drain(ra)
            drain(rb)
            counts_a, counts_b = counts_by_key(only_a), counts_by_key(only_b_quiet)
            assert counts_a[(a.inode, RESET)] == 2 and {n for n, _ in counts_a} == {a.inode}
            assert counts_b[(b.inode, RESET)] == 4 and {n for n, _ in counts_b} == {b.inode}
            assert len(ring_a) == counts_a.total()
            assert ring_b == []  # targ_emit = false: counted, never sent


def test_rodata_errors(selftest_path: str) -> None:
    with pytest.raises(LookupError, match="no const volatile 'targ_nope'"):
        open_selftest(rodata={"targ_nope": 1}, path=selftest_path).open()
    with pytest.raises(ValueError, match="takes 4 bytes, got 2"):
        open_selftest(rodata={"targ_netns": b"\x01\x02"}, path=selftest_path).open()
    with pytest.raises(OverflowError):
        open_selftest(rodata={"targ_netns": -1}, path=selftest_path).open()


def test_classic_tracepoints(selftest_path: str) -> None:
    with (
        netns() as ns,
        BPFObject(selftest_path, TRACEPOINTS, rodata={"targ_netns": ns.inode}) as obj,
    ):
        obj.start()
        assert obj.chosen == {
            "reset": AttachPoint("tracepoint", "tcp/tcp_receive_reset"),
            "drop": AttachPoint("tracepoint", "skb/kfree_skb"),
        }
        records: list[bytes] = []
        ring = obj.ringbuf(EVENTS_MAP, records.append)
        tcp_refused(ns, 2)
        drain(ring)
        counts = counts_by_key(obj)
        assert counts[(ns.inode, RESET)] == 2 and counts[(ns.inode, DROP)] >= 2
        events = [decode(SelftestEvent, r) for r in records]
        reasons = btf.skb_drop_reasons()
        assert any(
            reasons.get(e.drop_reason) == "SKB_DROP_REASON_NO_SOCKET"
            for e in events
            if e.hdr.type == DROP
        )
        assert all(e.dport == 9 for e in events if e.hdr.type == RESET)


def test_fentry_first_falls_back_when_the_kernel_refuses_it(selftest_path: str) -> None:
    plan = AttachPlan.of(
        "reset",
        ("selftest_reset_fentry", "fentry", "tcp_reset"),
        ("selftest_reset_kprobe", "kprobe", "tcp_reset"),
        ("selftest_reset_tp", "tracepoint", "tcp/tcp_receive_reset"),
    )
    with (
        netns() as ns,
        BPFObject(selftest_path, (plan,), rodata={"targ_netns": ns.inode}) as obj,
    ):
        obj.start()
        if obj.chosen["reset"].kind == "fentry":
            assert obj.rejected == {}  # this kernel runs fentry programs
        else:
            # Here (Linux 6.18 without kprobes) fentry loads fail with EPERM: fall past it.
            assert "load failed" in obj.rejected["selftest_reset_fentry"]
            expected = "kprobe" if kernel_has_kprobes() else "tracepoint"
            assert obj.chosen["reset"].kind == expected
        tcp_refused(ns, 2)
        assert counts_by_key(obj)[(ns.inode, RESET)] == 2


def test_kprobe_only_plan(selftest_path: str) -> None:
    plan = AttachPlan.of("reset", ("selftest_reset_kprobe", "kprobe", "tcp_reset"))
    obj = BPFObject(selftest_path, (plan,))
    if kernel_has_kprobes():
        with obj:
            obj.start()
            assert obj.chosen["reset"] == AttachPoint("kprobe", "tcp_reset")
        return
    with pytest.raises(
        Unavailable, match=r"kprobe/tcp_reset: kernel without kprobes \(CONFIG_KPROBES\)"
    ):
        obj.start()
    assert obj.state == "closed"


def test_verifier_reject_is_unavailable_and_other_objects_still_load(
    selftest_path: str, broken_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken_plan = AttachPlan.of("broken", ("selftest_broken_btf", "tp_btf", "tcp_receive_reset"))
    broken = BPFObject(broken_path, (*PLANS, broken_plan))
    caplog.set_level(logging.DEBUG, logger="otel_kubeskoop.bpf.libbpf")
    with pytest.raises(Unavailable) as info:
        broken.start()
    message = str(info.value)
    assert message.startswith("selftest_broken: no usable attach point for 'broken': ")
    assert "tp_btf/tcp_receive_reset: load failed: EACCES" in message
    assert "R0 invalid mem access 'map_value_or_null'" in message  # the verifier's words
    assert broken.state == "closed"
    assert broken.rejected == {"selftest_broken_btf": "load failed: EACCES (Permission denied)"}
    # libbpf's lines reached our logger.
    assert any(
        "invalid mem access" in r.getMessage() for r in caplog.records if r.name.endswith("libbpf")
    )
    broken.close()

    with netns() as ns, open_selftest(rodata={"targ_netns": ns.inode}, path=selftest_path) as good:
        good.start()
        tcp_refused(ns, 1)
        assert counts_by_key(good)[(ns.inode, RESET)] == 1


def test_load_close_load_again_and_misuse(selftest_path: str) -> None:
    for _ in range(3):
        obj = open_selftest(path=selftest_path)
        obj.start()
        assert obj.chosen == TP_BTF
        obj.close()
    with pytest.raises(RuntimeError, match="maps exist once loaded"):
        open_selftest(path=selftest_path).map(COUNTS_MAP)
    obj = open_selftest(path=selftest_path)
    obj.load()
    with pytest.raises(TypeError, match="not a ring buffer"):
        obj.ringbuf(COUNTS_MAP, print)
    with pytest.raises(TypeError, match="key type"):
        obj.map(COUNTS_MAP, ctypes.c_uint32)
    obj.close()
    with pytest.raises(RuntimeError, match="is closed"):
        obj.attach()
