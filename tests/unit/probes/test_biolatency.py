# SPDX-License-Identifier: Apache-2.0
"""biolatency without a kernel: a record recorded on Linux 6.18 decodes to its event; device
names come from /sys/dev/block; histograms are per (namespace, disk, operation); the two hooks
must key requests alike."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.attach import AttachPoint, choose, plans
from otel_kubeskoop.bpf.generated import biolatency as contract
from otel_kubeskoop.bpf.generated.biolatency import BiolatencyEvent, BiolatencyFlag, BiolatencyKey
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.probe import Cycle, Kind, ProbeContext
from otel_kubeskoop.probes import biolatency
from otel_kubeskoop.probes._latency import BOUNDS
from tests.unit.probes.bpfdumps import as_json, dumps, read
from tests.unit.probes.latencyfakes import Features, hist, latency_object, samples_by_key

PLANS = plans(contract.OBJECT)

A_NS = 4026532281
DEV, OP = "system.device", "kubeskoop.block.operation"
LOOP1 = 7 << 20 | 1


def dump_devices(path: Path) -> dict[int, str]:
    body = json.loads(path.read_text().partition("\n.\n")[2])
    out = {}
    for majmin, name in body["kernel"]["block_devices"].items():
        major, minor = map(int, majmin.split(":"))
        out[major << 20 | minor] = name
    return out


@pytest.mark.parametrize("path", dumps("biolatency"), ids=lambda p: p.stem)
def test_recorded_records_decode(path: Path) -> None:
    dump = read(path)
    assert len(dump.raw) == ctypes.sizeof(BiolatencyEvent)
    assert records.to_dict(records.decode(BiolatencyEvent, dump.raw)) == dump.record
    event = biolatency.decode_biolatency(dump.raw, dump_devices(path).__getitem__, 0)
    assert as_json(event) == dump.event
    got = dict(event.attributes)
    assert (event.name, event.upstream_type) == ("kubeskoop.biolatency.slow", "BIOLAT_10MS")
    assert got["kubeskoop.latency"] > 0.1  # throttled to 5 reads a second


def test_flags_and_unnamed_devices() -> None:
    rec = BiolatencyEvent.from_buffer_copy(read(dumps("biolatency")[0]).raw)
    rec.flags = BiolatencyFlag.BIOLATENCY_KTHREAD | BiolatencyFlag.BIOLATENCY_FAILED
    rec.op = 2
    rec.dev = 253 << 20 | 4
    got = dict(biolatency.decode_biolatency(bytes(rec)).attributes)
    assert got[DEV] == "253:4"
    assert got[OP] == "flush"
    assert got["kubeskoop.task.kernel_thread"] is True
    assert got["error.type"] == "io_error"
    rec.hdr.type = 2
    with pytest.raises(DecodeError, match="unknown event type 2"):
        biolatency.decode_biolatency(bytes(rec))


def test_device_names_from_sysfs(tmp_path: Path) -> None:
    (tmp_path / "7:1").mkdir()
    (tmp_path / "7:1" / "uevent").write_text("MAJOR=7\nMINOR=1\nDEVNAME=loop1\nDEVTYPE=disk\n")
    (tmp_path / "259:0").mkdir()
    (tmp_path / "259:0" / "uevent").write_text("MAJOR=259\nMINOR=0\n")
    assert biolatency.device_name(LOOP1, str(tmp_path)) == "loop1"
    assert biolatency.device_name(259 << 20, str(tmp_path)) is None
    names = biolatency.DeviceNames(str(tmp_path))
    assert names(LOOP1) == "loop1"
    assert names(7 << 20 | 2) == "7:2"
    (tmp_path / "7:2").mkdir()
    (tmp_path / "7:2" / "uevent").write_text("DEVNAME=loop2\n")
    assert names(7 << 20 | 2) == "loop2"  # a device that appeared later is looked up again
    assert biolatency.dev_numbers(LOOP1) == (7, 1)


def test_samples_per_namespace_disk_and_operation(tmp_path: Path) -> None:
    (tmp_path / "7:1").mkdir()
    (tmp_path / "7:1" / "uevent").write_text("DEVNAME=loop1\n")
    ctx = ProbeContext(name="biolatency", cycle=Cycle(namespaces={A_NS: object()}))
    probe = biolatency.BiolatencyProbe(None, ctx)
    probe.device_names = biolatency.DeviceNames(str(tmp_path))
    reads = hist({17: 40}, sum_ns=40 * 150_000)
    probe.bpf.obj = latency_object([(BiolatencyKey(A_NS, 1, LOOP1, 0), reads),
                                (BiolatencyKey(A_NS, 1, LOOP1, 1), hist({18: 25})),
                                (BiolatencyKey(0, 1, LOOP1, 1), hist({18: 2}))])
    got = samples_by_key(probe.collect())
    h = got[("kubeskoop.biolatency.duration", A_NS, ((DEV, "loop1"), (OP, "read")))]
    assert h.bounds == BOUNDS and sum(h.counts) == 40 and h.sum == pytest.approx(0.006)
    assert sum(got[("kubeskoop.biolatency.duration", A_NS, ((DEV, "loop1"), (OP, "write")))].counts) == 25
    # A task with no namespace (exiting) lands on the node.
    assert ("kubeskoop.biolatency.duration", None, ((DEV, "loop1"), (OP, "write"))) in got


def test_the_two_hooks_key_requests_alike() -> None:
    assert biolatency.keys_agree({"issue": AttachPoint("tp_btf", "block_rq_issue"),
                                  "complete": AttachPoint("fentry", "blk_update_request")})
    assert biolatency.keys_agree({"issue": AttachPoint("tracepoint", "block/block_rq_issue"),
                                  "complete": AttachPoint("tracepoint", "block/block_rq_complete")})
    assert not biolatency.keys_agree({"issue": AttachPoint("tracepoint", "block/block_rq_issue"),
                                      "complete": AttachPoint("tp_btf", "block_rq_complete")})
    # On a kernel offering a mix, ClassicOnly makes both hooks take classic tracepoints.
    mixed = Features("tracepoint/block/block_rq_issue", "tp_btf/block_rq_complete",
                     "tracepoint/block/block_rq_complete")
    chosen = {p.hook: choose(p, mixed).point for p in PLANS}
    assert not biolatency.keys_agree(chosen)
    classic = biolatency.ClassicOnly(mixed)
    chosen = {p.hook: choose(p, classic).point for p in PLANS}
    assert biolatency.keys_agree(chosen) and {p.kind.value for p in chosen.values()} == {"tracepoint"}


def test_plans_and_spec() -> None:
    for plan in PLANS:
        assert [c.point.kind.value for c in plan.candidates] == ["tp_btf", "tracepoint", "fentry", "kprobe"]
    assert biolatency.SPEC.kinds == {Kind.METRICS, Kind.EVENTS}
    assert biolatency.BiolatencyArgs().threshold_ns == 10_000_000
    assert all(i.compat is None for i in biolatency.SPEC.instruments)  # upstream: events only
