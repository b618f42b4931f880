# SPDX-License-Identifier: Apache-2.0
"""virtcmdlatency without a kernel: the decoder on a constructed record (no development machine
can run the probe), samples, and the attach plan's choice from kernel feature sets, down to the
development machine's (no kprobes, fentry refused): unavailable, with a reason naming both."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import choose, plans
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.bpf.generated import virtcmdlatency as contract
from otel_kubeskoop.bpf.generated.virtcmdlatency import (
    VirtcmdlatencyEvent,
    VirtcmdlatencyKey,
    VirtcmdlatencyValue,
)
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext, Unavailable
from otel_kubeskoop.probes import virtcmdlatency
from tests.unit.bpf.btfbuild import BTFBuilder
from tests.unit.probes.bpfdumps import as_json, dumps, read
from tests.unit.probes.latencyfakes import Features, hist, latency_object, samples_by_key

PLANS = plans(contract.OBJECT)

HOST = 4026531840
ENTRY, EXIT = PLANS
EVERYTHING = [c.point.section for p in PLANS for c in p.candidates]


@pytest.mark.parametrize("path", dumps("virtcmdlatency"), ids=lambda p: p.stem)
def test_constructed_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(VirtcmdlatencyEvent)
    assert records.to_dict(records.decode(VirtcmdlatencyEvent, dump.raw)) == dump.record
    event = virtcmdlatency.decode_virtcmdlatency(dump.raw, 0)
    assert as_json(event) == dump.event
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.virtcmdlatency.slow_100ms", "VIRTCMDEXCUTE_100MS")
    assert got["kubeskoop.virtio.ctrl.class"] == "mq"
    assert got["network.interface.name"] == "eth0"
    assert got["kubeskoop.latency"] == pytest.approx(0.153)
    assert got["cpu.logical_number"] == 1 and event.timestamp_ns == 5_000_000_000


def test_event_types_and_errors() -> None:
    rec = VirtcmdlatencyEvent.from_buffer_copy(read(dumps("virtcmdlatency")[0]).raw)
    rec.hdr.type, rec.cls = 1, 42
    event = virtcmdlatency.decode_virtcmdlatency(bytes(rec), 7)
    assert (event.name, event.upstream_type) == ("kubeskoop.virtcmdlatency.slow", "VIRTCMDEXCUTE")
    assert dict(event.attributes)["kubeskoop.virtio.ctrl.class"] == "42"
    rec.hdr.type = 3
    with pytest.raises(DecodeError, match="unknown event type 3"):
        virtcmdlatency.decode_virtcmdlatency(bytes(rec))
    with pytest.raises(DecodeError, match="expected 72"):
        virtcmdlatency.decode_virtcmdlatency(bytes(rec) + b"\0")


def test_samples() -> None:
    value = VirtcmdlatencyValue()
    value.hist = hist({23: 3, 27: 1}, sum_ns=3 * 9_000_000 + 150_000_000, slow=(1, 1))
    value.ifname = b"eth0"
    probe = virtcmdlatency.VirtcmdlatencyProbe(
        None, ProbeContext(name="virtcmdlatency", cycle=Cycle(namespaces={HOST: object()})))
    probe.bpf.obj = latency_object([(VirtcmdlatencyKey(HOST, 1, 2, 4), value)])
    got = samples_by_key(probe.collect())
    attrs = (("network.interface.name", "eth0"), ("kubeskoop.virtio.ctrl.class", "mq"))
    assert sum(got[("kubeskoop.virtcmdlatency.duration", HOST, attrs)].counts) == 4
    assert got[("kubeskoop.virtcmdlatency.latency", HOST, attrs)] == 1
    assert got[("kubeskoop.virtcmdlatency.latency100ms", HOST, attrs)] == 1


# --- the attach plan --------------------------------------------------------------------------


def chosen(features, rejected=None) -> tuple[str, str]:
    return tuple(choose(p, features, rejected).point.section for p in PLANS)


def test_a_current_kernel_with_trampolines_uses_fentry_fexit_on_the_reply_function() -> None:
    assert chosen(Features(*EVERYTHING)) == (
        "fentry/virtnet_send_command_reply", "fexit/virtnet_send_command_reply")


def test_a_kernel_before_6_10_has_only_virtnet_send_command() -> None:
    old = Features(*(s for s in EVERYTHING if not s.endswith("_reply")))
    assert chosen(old) == ("fentry/virtnet_send_command", "fexit/virtnet_send_command")


def test_trampolines_refused_fall_back_to_kprobes() -> None:
    rejected = {"virtcmdlatency_entry_reply_fentry": "load failed: EPERM",
                "virtcmdlatency_exit_reply_fexit": "load failed: EPERM"}
    kprobes_only = Features(*(s for s in EVERYTHING if s.startswith(("kprobe", "kretprobe"))))
    assert chosen(kprobes_only) == (
        "kprobe/virtnet_send_command_reply", "kretprobe/virtnet_send_command_reply")
    assert chosen(Features(*EVERYTHING), rejected) == (
        "fentry/virtnet_send_command", "fexit/virtnet_send_command")


@pytest.fixture
def dev_machine(tmp_path: Path) -> KernelFeatures:
    """The development machine as KernelFeatures sees it: BTF has virtnet_send_command_reply
    (virtio_net built in; virtnet_send_command inlined away), kallsyms too, no kprobes."""
    b = BTFBuilder()
    info = b.struct("virtnet_info", 8, [])
    b.func("virtnet_send_command_reply", b.func_proto(0, [("vi", b.ptr(info))]))
    (tmp_path / "vmlinux").write_bytes(b.build())
    (tmp_path / "kallsyms").write_text(
        "ffffffff81dbf0e0 t virtnet_send_command_reply\n"
        "ffffffff8123b152 t virtnet_send_command_reply.cold\n")
    (tmp_path / "tracing" / "events").mkdir(parents=True)
    return KernelFeatures(btf_path=str(tmp_path / "vmlinux"), tracefs=str(tmp_path / "tracing"),
                          kprobe_pmu=str(tmp_path / "kprobe"), kallsyms=str(tmp_path / "kallsyms"))


def test_the_development_machine_offers_only_fentry_which_it_refuses(dev_machine: KernelFeatures) -> None:
    assert choose(ENTRY, dev_machine).program == "virtcmdlatency_entry_reply_fentry"
    assert choose(EXIT, dev_machine).program == "virtcmdlatency_exit_reply_fexit"
    # The loader marks fentry rejected when the load fails with EPERM: nothing is left.
    rejected = {"virtcmdlatency_entry_reply_fentry": "load failed: EPERM (Operation not permitted)"}
    with pytest.raises(Unavailable) as info:
        choose(ENTRY, dev_machine, rejected)
    message = str(info.value)
    assert "fentry/virtnet_send_command_reply: load failed: EPERM" in message
    assert "fentry/virtnet_send_command: no function virtnet_send_command in the kernel BTF" in message
    assert "kprobe/virtnet_send_command_reply: kernel without kprobes (CONFIG_KPROBES)" in message


def test_with_kprobes_the_development_machine_would_use_them(dev_machine: KernelFeatures, tmp_path: Path) -> None:
    (tmp_path / "kprobe").mkdir()
    features = KernelFeatures(btf_path=str(tmp_path / "vmlinux"), tracefs=str(tmp_path / "tracing"),
                              kprobe_pmu=str(tmp_path / "kprobe"), kallsyms=str(tmp_path / "kallsyms"))
    rejected = {"virtcmdlatency_entry_reply_fentry": "EPERM", "virtcmdlatency_exit_reply_fexit": "EPERM"}
    assert chosen(features, rejected) == (
        "kprobe/virtnet_send_command_reply", "kretprobe/virtnet_send_command_reply")


def test_plans_and_spec() -> None:
    for plan in PLANS:
        kinds = [c.point.kind.value for c in plan.candidates]
        assert kinds[:2] in (["fentry", "fentry"], ["fexit", "fexit"])  # no tracepoint exists
        assert kinds[2:] in (["kprobe", "kprobe"], ["kretprobe", "kretprobe"])
    assert virtcmdlatency.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert {i.compat for i in virtcmdlatency.SPEC.instruments} == {
        None, "kubeskoop_virtcmdlatency_latency", "kubeskoop_virtcmdlatency_latency100ms"}
