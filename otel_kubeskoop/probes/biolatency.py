# SPDX-License-Identifier: Apache-2.0
"""biolatency: block request latency per disk and operation, on the namespace of the issuing task.

The interval, between two kernel tracepoints (``bpf/biolatency.bpf.c``):
``block:block_rq_issue`` (``blk_mq_start_request()``: the request is dispatched to the driver)
-> ``block:block_rq_complete`` (``blk_update_request()``: its first completion). It is the
device's service time, as bcc's ``biolatency`` reports it without ``-Q``: time in the I/O
scheduler or in a plug before dispatch is not in it. Upstream KubeSkoop used kprobes on
``blk_account_io_start``/``blk_account_io_done``, which 6.x kernels inline (upstream #293).

A log2 histogram per (namespace, disk, operation) is exported as
``kubeskoop.biolatency.duration`` (seconds, buckets 2^(i+1) ns) with ``system.device``
(``loop1``, from ``/sys/dev/block``) and ``kubeskoop.block.operation`` (read, write, flush,
discard, other). Upstream has no biolatency metrics, so there is no compat series.

Attribution: the namespace is that of the task current at ``block_rq_issue``
(``task->nsproxy->net_ns``), read at issue since the completion runs in interrupt or softirq
context on behalf of no task. That is the submitting process when it dispatches its own request
(O_DIRECT and synchronous I/O on a device without an I/O scheduler queueing it, a plug it
flushes itself), so a pod's direct I/O lands on the pod. It cannot be attributed to a pod when a
kernel thread dispatches: page-cache writeback (flusher kworkers), journal commits (jbd2),
``kblockd`` running a queue asynchronously (after a requeue, or from an I/O scheduler), and the
workers of stacked devices (loop, dm, md issue to the device below from a kworker). Those land on
the host namespace (the node), and events mark them ``kubeskoop.task.kernel_thread``. Where a
cgroup would say more than the netns (a pod's writeback is charged to its blkcg), this probe does
not look.

Events (``event.probes``): ``kubeskoop.biolatency.slow`` (upstream ``BIOLAT_10MS``) for each
request over ``thresholdMs`` (default 10 ms), rate-limited per namespace, with the disk,
operation, size, sector, the issuing task's pid and command, and ``error.type`` when it failed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from otel_kubeskoop.bpf.attach import AttachKind, AttachPoint
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.bpf.generated import biolatency as contract
from otel_kubeskoop.bpf.generated.biolatency import (
    BiolatencyEvent,
    BiolatencyEventType,
    BiolatencyFlag,
    BiolatencyOp,
)
from otel_kubeskoop.bpf.records import DecodeError, decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._decode import record_event
from otel_kubeskoop.probes._latency import Histograms, LatencyArgs, histogram, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import H, InstrumentSpec

SYSTEM_DEVICE = "system.device"  # semconv (system.disk.*): a block device's name, loop1
BLOCK_OPERATION = "kubeskoop.block.operation"  # read, write, flush, discard, other
BLOCK_BYTES = "kubeskoop.block.bytes"  # int: a block request's size
BLOCK_SECTOR = "kubeskoop.block.sector"  # int: a block request's first sector
KERNEL_THREAD = "kubeskoop.task.kernel_thread"  # bool: the task was a kernel thread

BIOLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.biolatency.duration", H, "s",
    "Block request latency from block:block_rq_issue to block:block_rq_complete, by disk and "
    "operation, on the namespace of the task that issued the request",
    (SYSTEM_DEVICE, BLOCK_OPERATION))
INSTRUMENTS = (BIOLATENCY_DURATION,)

BIOLATENCY_SLOW = EventSpec(
    "kubeskoop.biolatency.slow", "BIOLAT_10MS",
    "A block request took longer than the threshold from issue to completion: the disk, "
    "operation, size, and the task that issued it",
    (SYSTEM_DEVICE, BLOCK_OPERATION, A.LATENCY, BLOCK_BYTES, BLOCK_SECTOR, A.PROCESS_PID,
     A.PROCESS_COMMAND, KERNEL_THREAD, A.ERROR_TYPE))
EVENTS = (BIOLATENCY_SLOW,)


INFLIGHT_MAP = "requests"
SYS_DEV_BLOCK = "/sys/dev/block"
MINORBITS = 20  # the kernel's dev_t: major << 20 | minor


#: kubeskoop.block.operation values
OPS = {
    BiolatencyOp.BIOLATENCY_OP_READ: "read",
    BiolatencyOp.BIOLATENCY_OP_WRITE: "write",
    BiolatencyOp.BIOLATENCY_OP_FLUSH: "flush",
    BiolatencyOp.BIOLATENCY_OP_DISCARD: "discard",
    BiolatencyOp.BIOLATENCY_OP_OTHER: "other",
}


class BiolatencyArgs(LatencyArgs):
    """``thresholdMs``: events for requests slower than this (upstream: 10 ms, BIOLAT_10MS)."""


def op_name(op: int) -> str:
    try:
        return OPS[BiolatencyOp(op)]
    except ValueError:
        return "other"


def dev_numbers(dev: int) -> tuple[int, int]:
    """(major, minor) of a kernel dev_t."""
    return dev >> MINORBITS, dev & ((1 << MINORBITS) - 1)


def device_name(dev: int, sys_dev_block: str = SYS_DEV_BLOCK) -> str | None:
    """The name of block device ``dev`` (kernel dev_t) from ``/sys/dev/block/M:m/uevent``."""
    major, minor = dev_numbers(dev)
    try:
        with open(os.path.join(sys_dev_block, f"{major}:{minor}", "uevent"), encoding="ascii",
                  errors="replace") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.strip().partition("=")[2] or None
    except OSError:
        return None
    return None


class DeviceNames:
    """dev_t -> name, cached; an unknown device is ``major:minor``."""

    def __init__(self, sys_dev_block: str = SYS_DEV_BLOCK) -> None:
        self.sys_dev_block = sys_dev_block
        self._names: dict[int, str] = {}

    def __call__(self, dev: int) -> str:
        name = self._names.get(dev)
        if name is None:
            found = device_name(dev, self.sys_dev_block)
            major, minor = dev_numbers(dev)
            name = found or f"{major}:{minor}"
            if found:  # a device that is not there (yet) is asked again next time
                self._names[dev] = name
        return name


def decode_biolatency(raw: bytes, names: Any = None, clock_offset_ns: int = 0) -> Event:
    """One ``struct biolatency_event`` as an Event; ``names(dev)`` names the disk. Pure."""
    rec = decode_exact(BiolatencyEvent, raw)
    if rec.hdr.type != BiolatencyEventType.BIOLAT_10MS:
        raise DecodeError(f"biolatency: unknown event type {rec.hdr.type}")
    major, minor = dev_numbers(rec.dev)
    attrs: list[tuple[str, Any]] = [
        (SYSTEM_DEVICE, names(rec.dev) if names is not None else f"{major}:{minor}"),
        (BLOCK_OPERATION, op_name(rec.op)),
        (A.LATENCY, seconds(rec.latency_ns)),
        (BLOCK_BYTES, rec.bytes),
        (BLOCK_SECTOR, rec.sector),
        (A.PROCESS_PID, rec.pid),
        (A.PROCESS_COMMAND, rec.comm.decode(errors="replace")),
        (KERNEL_THREAD, bool(rec.flags & BiolatencyFlag.BIOLATENCY_KTHREAD)),
    ]
    if rec.flags & BiolatencyFlag.BIOLATENCY_FAILED:
        attrs.append((A.ERROR_TYPE, "io_error"))
    return record_event(BIOLATENCY_SLOW, rec.hdr, attrs, clock_offset_ns)


class _MixedKeys(Exception):
    """The two hooks were given attach points that key requests differently."""


class ClassicOnly:
    """Kernel features with everything but classic tracepoints refused."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def unavailable(self, point: AttachPoint) -> str | None:
        if point.kind is not AttachKind.TRACEPOINT:
            return "not used: the other hook needs a classic tracepoint (requests keyed alike)"
        return self.base.unavailable(point)


def keys_agree(chosen: dict[str, AttachPoint]) -> bool:
    """Whether the issue and complete attach points key requests alike: by request pointer
    (tp_btf, fentry, kprobe) or by (dev, sector) (classic tracepoints)."""
    classic = {hook: point.kind is AttachKind.TRACEPOINT for hook, point in chosen.items()}
    return len(set(classic.values())) <= 1


def require_keys_agree(chosen: Mapping[str, AttachPoint]) -> None:
    if not keys_agree(chosen):
        raise _MixedKeys(", ".join(f"{h}: {p}" for h, p in chosen.items()))


class BiolatencyProbe(HandleProbe):
    def __init__(self, args: BiolatencyArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else BiolatencyArgs()
        self.device_names = DeviceNames()
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.hists = Histograms(self.bpf, INFLIGHT_MAP)
        self._classic_only = False

    def _start(self) -> None:
        features = ClassicOnly(self.bpf.features or KernelFeatures()) if self._classic_only else None
        self.bpf.start(self.args.settings, events=self.args, features=features,
                       attached=require_keys_agree)

    def start(self) -> None:
        try:
            self._start()
        except _MixedKeys:
            self._classic_only = True
            self._start()

    def samples_of(self, key: Any, value: Any, netns: int | None) -> list[Sample]:
        attrs = ((SYSTEM_DEVICE, self.device_names(key.dev)), (BLOCK_OPERATION, op_name(key.op)))
        return [Sample(BIOLATENCY_DURATION, histogram(value), netns, attrs)]

    def collect(self) -> list[Sample]:
        return self.hists.collect(self.samples_of)

    def decode(self, raw: bytes) -> Event:
        return decode_biolatency(raw, self.device_names, self.bpf.clock_offset)


SPEC = ProbeSpec(
    name="biolatency",
    summary="Block request latency (block:block_rq_issue to block:block_rq_complete) per disk "
            "and operation, on the issuing task's namespace, as histograms",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.MEDIUM,
    overhead_note="a start slot written per block request issued, read and a histogram "
                  "updated per completion, in the kernel; one table read per collection, series "
                  "scale with namespaces x disks",
    default_enabled=False,
    factory=BiolatencyProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=BiolatencyArgs,
    requires=bpf_requires("tracepoints block:block_rq_issue, block:block_rq_complete (tp_btf, "
                          "else classic)"),
)
