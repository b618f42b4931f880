# SPDX-License-Identifier: Apache-2.0
"""virtcmdlatency: latency of virtio-net control commands, per namespace, interface and class.

The interval (``bpf/virtcmdlatency.bpf.c``): entry -> return of ``virtnet_send_command_reply()``
(``virtnet_send_command()`` before Linux 6.10): the driver puts a command (set MAC, RX mode,
number of queues, VLAN filter, offloads, coalescing...) on the control virtqueue, kicks the
device, and polls for its answer. A slow answer stalls whoever sent it (often with the RTNL
held), which is what upstream watches for.

No tracepoint is near that code, so only function hooks reach it: fentry/fexit (BPF trampolines)
or kprobe/kretprobe. On a kernel without kprobes where fentry does not load (the development
machines: ``CONFIG_KPROBES`` off, fentry refused with EPERM) the probe is unavailable, and its
status says so candidate by candidate.

A log2 histogram per (device's namespace, interface, class) is exported as
``kubeskoop.virtcmdlatency.duration`` (seconds, buckets 2^(i+1) ns) with
``network.interface.name`` and ``kubeskoop.virtio.ctrl.class``, plus upstream's counters
``kubeskoop.virtcmdlatency.latency`` (>10 ms) and ``...latency100ms`` (>100 ms), counted in the
kernel.

Events (``event.probes``): ``kubeskoop.virtcmdlatency.slow`` (upstream ``VIRTCMDEXCUTE``) above
``thresholdMs`` (default 10 ms) and ``.slow_100ms`` (``VIRTCMDEXCUTE_100MS``) above 100 ms, with
the interface, class, command, latency, CPU and the sending task.
"""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.bpf.generated import virtcmdlatency as contract
from otel_kubeskoop.bpf.generated.virtcmdlatency import VirtcmdlatencyEvent, VirtcmdlatencyEventType
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import bpf_requires
from otel_kubeskoop.probes._decode import event_type, ifname, record_event
from otel_kubeskoop.probes._latency import Latency, LatencyArgs, LatencyProbe, histogram, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

VIRTIO_CTRL_CLASS = "kubeskoop.virtio.ctrl.class"  # rx, mac, vlan, announce, mq, ...
VIRTIO_CTRL_COMMAND = "kubeskoop.virtio.ctrl.command"  # int: the class's command number

_VIRTIO = (A.NETWORK_INTERFACE_NAME, VIRTIO_CTRL_CLASS)
VIRTCMDLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.virtcmdlatency.duration", H, "s",
    "virtio-net control command latency, entry to return of virtnet_send_command(_reply)",
    _VIRTIO)
VIRTCMDLATENCY_LATENCY = InstrumentSpec(
    "kubeskoop.virtcmdlatency.latency", C, "{command}",
    "virtio-net control commands slower than 10 ms", _VIRTIO, key="0",
    compat="kubeskoop_virtcmdlatency_latency")
VIRTCMDLATENCY_LATENCY100MS = InstrumentSpec(
    "kubeskoop.virtcmdlatency.latency100ms", C, "{command}",
    "virtio-net control commands slower than 100 ms", _VIRTIO, key="1",
    compat="kubeskoop_virtcmdlatency_latency100ms")
INSTRUMENTS = (VIRTCMDLATENCY_DURATION, VIRTCMDLATENCY_LATENCY, VIRTCMDLATENCY_LATENCY100MS)

_EVENT_ATTRIBUTES = (A.NETWORK_INTERFACE_NAME, VIRTIO_CTRL_CLASS, VIRTIO_CTRL_COMMAND, A.LATENCY,
            A.CPU_LOGICAL_NUMBER, A.PROCESS_PID, A.PROCESS_COMMAND)
VIRTCMDLATENCY_SLOW = EventSpec(
    "kubeskoop.virtcmdlatency.slow", "VIRTCMDEXCUTE",
    "A virtio-net control command took longer than the threshold (and at most 100 ms)", _EVENT_ATTRIBUTES)
VIRTCMDLATENCY_SLOW_100MS = EventSpec(
    "kubeskoop.virtcmdlatency.slow_100ms", "VIRTCMDEXCUTE_100MS",
    "A virtio-net control command took longer than 100 ms", _EVENT_ATTRIBUTES)
EVENTS = (VIRTCMDLATENCY_SLOW, VIRTCMDLATENCY_SLOW_100MS)

INFLIGHT_MAP = "calls"

#: VIRTIO_NET_CTRL_* classes, include/uapi/linux/virtio_net.h (the virtio spec's numbers)
CLASSES = {0: "rx", 1: "mac", 2: "vlan", 3: "announce", 4: "mq", 5: "guest_offloads",
           6: "notf_coal", 8: "stats"}
_EVENTS = {VirtcmdlatencyEventType.VIRTCMDEXCUTE: VIRTCMDLATENCY_SLOW,
           VirtcmdlatencyEventType.VIRTCMDEXCUTE_100MS: VIRTCMDLATENCY_SLOW_100MS}


class VirtcmdlatencyArgs(LatencyArgs):
    """``thresholdMs``: events for commands slower than this (upstream: 10 ms)."""


def ctrl_class(cls: int) -> str:
    return CLASSES.get(cls, str(cls))


def decode_virtcmdlatency(raw: bytes, clock_offset_ns: int = 0) -> Event:
    """One ``struct virtcmdlatency_event`` as an Event. Pure."""
    rec = decode_exact(VirtcmdlatencyEvent, raw)
    spec = _EVENTS[event_type(VirtcmdlatencyEventType, rec.hdr.type, "virtcmdlatency")]
    return record_event(spec, rec.hdr, (
        (A.NETWORK_INTERFACE_NAME, ifname(rec.ifname, rec.ifindex)),
        (VIRTIO_CTRL_CLASS, ctrl_class(rec.cls)),
        (VIRTIO_CTRL_COMMAND, rec.cmd),
        (A.LATENCY, seconds(rec.latency_ns)),
        (A.CPU_LOGICAL_NUMBER, rec.cpu),
        (A.PROCESS_PID, rec.pid),
        (A.PROCESS_COMMAND, rec.comm.decode(errors="replace")),
    ), clock_offset_ns)


def samples_of(key: Any, value: Any, netns: int | None) -> list[Sample]:
    """The samples of one ``hists`` entry: its histogram and upstream's two counters."""
    attrs = ((A.NETWORK_INTERFACE_NAME, ifname(value.ifname, key.ifindex)),
             (VIRTIO_CTRL_CLASS, ctrl_class(key.cls)))
    return [
        Sample(VIRTCMDLATENCY_DURATION, histogram(value.hist), netns, attrs),
        Sample(VIRTCMDLATENCY_LATENCY, value.hist.slow[0], netns, attrs),
        Sample(VIRTCMDLATENCY_LATENCY100MS, value.hist.slow[1], netns, attrs),
    ]


#: the probe: its object, in-flight table, samples and events
TABLE = Latency(contract.OBJECT, VirtcmdlatencyArgs, INFLIGHT_MAP, samples_of, decode_virtcmdlatency)


class VirtcmdlatencyProbe(LatencyProbe):
    TABLE = TABLE


SPEC = ProbeSpec(
    name="virtcmdlatency",
    summary="virtio-net control command latency (virtnet_send_command), as histograms; needs "
            "fentry or kprobes",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="a start slot written and read per virtio-net control command (a handful a "
                  "minute: MAC, RX mode, queue changes); one table read per collection",
    default_enabled=False,
    factory=VirtcmdlatencyProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=VirtcmdlatencyArgs,
    requires=bpf_requires("fentry/fexit (BPF trampolines) or kprobes (CONFIG_KPROBES) on "
                          "virtnet_send_command_reply or virtnet_send_command (the virtio_net driver)"),
)
