# SPDX-License-Identifier: Apache-2.0
"""Choosing attach points: the pure chooser on fake features, and KernelFeatures on a fake
kernel (BTF blob, tracefs tree, kallsyms) laid out in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_kubeskoop.bpf.attach import AttachKind, AttachPlan, AttachPoint, choose
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.probe import Unavailable
from tests.unit.bpf.btfbuild import BTFBuilder

PLAN = AttachPlan.of(
    "reset",
    ("p_btf", "tp_btf", "tcp_receive_reset"),
    ("p_tp", "tracepoint", "tcp/tcp_receive_reset"),
    ("p_fentry", "fentry", "tcp_reset"),
    ("p_kprobe", "kprobe", "tcp_reset"),
)


class FakeFeatures:
    """Attach points that exist; everything else is missing with a reason naming it."""

    def __init__(self, *available: str) -> None:
        self.available = set(available)

    def unavailable(self, point: AttachPoint) -> str | None:
        return None if point.section in self.available else f"no {point.kind} here"


def test_first_available_candidate_wins() -> None:
    everything = FakeFeatures(*(c.point.section for c in PLAN.candidates))
    assert choose(PLAN, everything).program == "p_btf"
    assert (
        choose(PLAN, FakeFeatures("tracepoint/tcp/tcp_receive_reset", "kprobe/tcp_reset")).program
        == "p_tp"
    )
    assert choose(PLAN, FakeFeatures("kprobe/tcp_reset")).program == "p_kprobe"


def test_rejected_candidates_are_skipped() -> None:
    features = FakeFeatures("fentry/tcp_reset", "tracepoint/tcp/tcp_receive_reset")
    assert choose(PLAN, features).program == "p_tp"
    assert choose(PLAN, features, {"p_tp": "attach failed"}).program == "p_fentry"


def test_nothing_usable_names_every_reason() -> None:
    with pytest.raises(Unavailable) as info:
        choose(PLAN, FakeFeatures("fentry/tcp_reset"), {"p_fentry": "load failed: EPERM"})
    message = str(info.value)
    assert message.startswith("no usable attach point for 'reset': ")
    assert "tp_btf/tcp_receive_reset: no tp_btf here" in message
    assert "fentry/tcp_reset: load failed: EPERM" in message
    assert "kprobe/tcp_reset: no kprobe here" in message


def test_attach_point_validation_and_section() -> None:
    assert AttachPoint("tracepoint", "skb/kfree_skb").section == "tracepoint/skb/kfree_skb"
    assert AttachPoint("tp_btf", "kfree_skb").kind is AttachKind.TP_BTF
    with pytest.raises(ValueError, match="category/name"):
        AttachPoint("tracepoint", "kfree_skb")
    with pytest.raises(ValueError):
        AttachPoint("uprobe", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no candidates"):
        AttachPlan("empty", ())


def test_a_program_or_hook_in_two_plans_is_refused_before_any_io() -> None:
    twice = AttachPlan.of("other", ("p_tp", "tracepoint", "tcp/tcp_receive_reset"))
    with pytest.raises(ValueError, match="two attach plans"):
        BPFObject("/nonexistent.bpf.o", [PLAN, twice])
    with pytest.raises(ValueError, match="two attach plans"):
        BPFObject("/nonexistent.bpf.o", [PLAN, AttachPlan.of("reset", ("q", "kprobe", "f"))])


@pytest.fixture
def fake_kernel(tmp_path: Path) -> dict[str, str]:
    b = BTFBuilder()
    sock = b.struct("sock", 8, [])
    proto = b.func_proto(0, [("", b.ptr(0)), ("", b.ptr(sock))])
    b.typedef("btf_trace_tcp_receive_reset", b.ptr(proto))
    b.func("tcp_reset", b.func_proto(0, [("sk", b.ptr(sock))]))
    (tmp_path / "vmlinux").write_bytes(b.build())
    event = tmp_path / "tracing" / "events" / "tcp" / "tcp_receive_reset"
    event.mkdir(parents=True)
    (event / "id").write_text("2279\n")
    (tmp_path / "kallsyms").write_text("ffffffff81000000 T tcp_reset\nffffffff81000010 t other\n")
    return {
        "btf_path": str(tmp_path / "vmlinux"),
        "tracefs": str(tmp_path / "tracing"),
        "kprobe_pmu": str(tmp_path / "kprobe"),  # absent: no kprobes
        "kallsyms": str(tmp_path / "kallsyms"),
    }


def test_kernel_features_on_a_fake_kernel(fake_kernel: dict[str, str], tmp_path: Path) -> None:
    features = KernelFeatures(**fake_kernel)
    assert features.unavailable(AttachPoint("tp_btf", "tcp_receive_reset")) is None
    assert "btf_trace_kfree_skb" in str(features.unavailable(AttachPoint("tp_btf", "kfree_skb")))
    assert features.unavailable(AttachPoint("tracepoint", "tcp/tcp_receive_reset")) is None
    assert "no tracepoint skb/kfree_skb" in str(
        features.unavailable(AttachPoint("tracepoint", "skb/kfree_skb"))
    )
    assert features.unavailable(AttachPoint("fentry", "tcp_reset")) is None
    assert "no function tcp_rcv" in str(features.unavailable(AttachPoint("fentry", "tcp_rcv")))
    assert "CONFIG_KPROBES" in str(features.unavailable(AttachPoint("kprobe", "tcp_reset")))
    (tmp_path / "kprobe").mkdir()
    with_kprobes = KernelFeatures(**fake_kernel)
    assert with_kprobes.unavailable(AttachPoint("kprobe", "tcp_reset")) is None
    assert "no kernel symbol nope" in str(with_kprobes.unavailable(AttachPoint("kprobe", "nope")))
    assert choose(PLAN, features).program == "p_btf"


def test_kernel_without_btf_or_tracefs(tmp_path: Path) -> None:
    features = KernelFeatures(btf_path=str(tmp_path / "missing"), tracefs=str(tmp_path))
    assert "CONFIG_DEBUG_INFO_BTF" in str(
        features.unavailable(AttachPoint("tp_btf", "tcp_receive_reset"))
    )
    assert "CONFIG_DEBUG_INFO_BTF" in str(features.unavailable(AttachPoint("fentry", "tcp_reset")))
    assert "tracefs unavailable" in str(
        features.unavailable(AttachPoint("tracepoint", "tcp/tcp_receive_reset"))
    )
