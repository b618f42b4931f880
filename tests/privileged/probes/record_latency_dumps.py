# SPDX-License-Identifier: Apache-2.0
"""Record ``tests/fixtures/bpf_events/{netiftxlat,softirq,biolatency}_*.dump`` on this kernel, and
construct ``virtcmdlatency_*.dump`` (no kernel here can run that probe: it needs fentry or kprobes).

    sudo .venv/bin/python -m tests.privileged.probes.record_latency_dumps

Each scenario of the privileged tests is played once in throw-away namespaces (and loop devices);
the first ring-buffer record of the wanted kind is written with what the decoder needs (block
device names) and the Event it decodes to (clock offset 0), so that
``tests/unit/probes/test_<probe>.py`` can decode it anywhere. Review the diff.
"""

from __future__ import annotations

import ctypes
import json
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.generated.biolatency import BiolatencyEvent, BiolatencyEventType
from otel_kubeskoop.bpf.generated.common import EventHeader
from otel_kubeskoop.bpf.generated.netiftxlat import NetiftxlatEvent, NetiftxlatStage
from otel_kubeskoop.bpf.generated.softirq import SoftirqEvent, SoftirqEventType
from otel_kubeskoop.bpf.generated.virtcmdlatency import VirtcmdlatencyEvent, VirtcmdlatencyEventType
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes import biolatency, netiftxlat, softirq, virtcmdlatency
from tests.privileged.netnsutil import netns, veth_pair
from tests.privileged.probes import test_biolatency as bio
from tests.privileged.probes import test_netiftxlat as net
from tests.privileged.probes import test_softirq as sirq
from tests.privileged.probes.conftest import no_ipv6
from tests.privileged.probes.record_dumps import Recorder, event_json

OUT = Path(__file__).resolve().parents[2] / "fixtures" / "bpf_events"
STRUCTS = {"netiftxlat": NetiftxlatEvent, "softirq": SoftirqEvent,
           "biolatency": BiolatencyEvent, "virtcmdlatency": VirtcmdlatencyEvent}


def write(probe: str, case: str, what: str, raw: bytes, event: Event,
          kernel: dict[str, Any] | None = None, origin: str = "") -> None:
    struct = STRUCTS[probe]
    rec = struct.from_buffer_copy(raw)
    hexed = raw.hex()
    rows = [" ".join(hexed[i + j: i + j + 8] for j in range(0, 32, 8) if i + j < len(hexed))
            for i in range(0, len(hexed), 32)]
    body = {"record": records.to_dict(rec), "kernel": kernel or {}, "event": event_json(event)}
    pretty = re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                    json.dumps(body, indent=2))
    origin = origin or (f"recorded from bpf/{probe}.bpf.c on Linux {platform.release()} "
                        f"{platform.machine()}")
    text = (
        f"# {struct.__name__} (bpf/{probe}.h), {len(raw)} bytes, {origin}:\n"
        + "".join(f"# {line}\n" for line in what.splitlines())
        + "# Hex bytes, then a line with a single '.', then JSON: the record (records.to_dict), what\n"
        "# the decoder needs besides the bytes (block device names) and the Event it decodes to.\n"
        + "\n".join(rows) + "\n.\n" + pretty + "\n"
    )
    path = OUT / f"{probe}_{case}.dump"
    path.write_text(text)
    print(f"wrote {path}")


def first(rec: Recorder, probe: str, event_type: int) -> bytes:
    for raw in rec.raw.get(probe, []):
        if EventHeader.from_buffer_copy(raw).type == event_type:
            return raw
    raise SystemExit(f"{probe}: no record of type {event_type} seen")


def record_netiftxlat() -> None:
    rec = Recorder()
    try:
        # Every packet's driver stage is over a 100 ns threshold, so XMIT events come too.
        rec.start(netiftxlat.SPEC, netiftxlat.NetiftxlatArgs(thresholdMs=0.0001))
        with netns() as a, netns() as b:
            no_ipv6(a, b)
            with veth_pair(a, b) as (dev_a, dev_b):
                net.shaped_pair(a, b, dev_a, dev_b)
                net.blast(a, 10)
                rec.drain()
        stage = NetiftxlatStage
        for case, kind, what in (
            ("qdisc_udp", stage.NETIFTXLAT_QDISC,
             "a UDP datagram that waited in a 1 Mbit/s tbf qdisc on a veth (threshold 100 ns)"),
            ("xmit_veth", stage.NETIFTXLAT_XMIT,
             "veth's ndo_start_xmit over a 100 ns threshold: no tuple (the packet may be freed)"),
        ):
            raw = first(rec, "netiftxlat", kind)
            write("netiftxlat", case, what, raw, netiftxlat.decode_netiftxlat(raw, 0))
    finally:
        rec.close()


def record_softirq() -> None:
    rec = Recorder()
    try:
        rec.start(softirq.SPEC, softirq.SoftirqArgs(thresholdMs=0.0001))
        sirq.traffic(50)
        rec.drain()
        types = SoftirqEventType
        for case, kind, what in (
            ("sched_slow_net_rx", types.SOFTIRQ_SCHED_SLOW,
             "NET_RX raised by veth traffic, waiting over a 100 ns threshold to run"),
            ("execute_slow_net_rx", types.SOFTIRQ_EXCUTE_SLOW,
             "a NET_RX run for veth traffic over a 100 ns threshold"),
        ):
            raw = first(rec, "softirq", kind)
            write("softirq", case, what, raw, softirq.decode_softirq(raw, 0))
    finally:
        rec.close()


def record_biolatency() -> None:
    rec = Recorder()
    try:
        rec.start(biolatency.SPEC, biolatency.BiolatencyArgs(thresholdMs=10))
        with tempfile.TemporaryDirectory() as tmp, netns() as a, \
                bio.loop_device(Path(tmp) / "lower.img") as lower, bio.loop_device(lower) as upper:
            with bio.throttled_cgroup(lower, read_iops=5) as procs:
                bio.direct_io(a, upper, reads=2, cgroup_procs=procs)
            rec.drain()
            raw = first(rec, "biolatency", BiolatencyEventType.BIOLAT_10MS)
            dev = BiolatencyEvent.from_buffer_copy(raw).dev
            major, minor = biolatency.dev_numbers(dev)
            devices = {f"{major}:{minor}": biolatency.device_name(dev)}
            names = {dev: devices[f"{major}:{minor}"]}
            write("biolatency", "slow_read_throttled", (
                "an O_DIRECT read of a loop device stacked on a loop device whose reads a blkio\n"
                "cgroup throttles to 5 per second, from a process in a test namespace"),
                raw, biolatency.decode_biolatency(raw, names.__getitem__, 0),
                kernel={"block_devices": devices})
    finally:
        rec.close()


def construct_virtcmdlatency() -> None:
    rec = VirtcmdlatencyEvent()
    rec.hdr.ts_ns = 5_000_000_000
    rec.hdr.netns = 4026531840
    rec.hdr.type = VirtcmdlatencyEventType.VIRTCMDEXCUTE_100MS
    rec.latency_ns = 153_000_000
    rec.pid = 812
    rec.cpu = 1
    rec.ifindex = 2
    rec.cls = 4  # VIRTIO_NET_CTRL_MQ
    rec.cmd = 0  # VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
    rec.ifname = b"eth0"
    rec.comm = b"ethtool"
    raw = bytes(rec)
    assert len(raw) == ctypes.sizeof(VirtcmdlatencyEvent)
    write("virtcmdlatency", "mq_100ms_constructed",
          "`ethtool -L eth0 combined 2` answered by the device after 153 ms: set queue pairs",
          raw, virtcmdlatency.decode_virtcmdlatency(raw, 0),
          origin="constructed with VirtcmdlatencyEvent (this kernel cannot run the probe: "
                 "no kprobes, fentry refused)")


def main(which: list[str]) -> None:
    steps = {"netiftxlat": record_netiftxlat, "softirq": record_softirq,
             "biolatency": record_biolatency, "virtcmdlatency": construct_virtcmdlatency}
    for name in which or list(steps):
        steps[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
