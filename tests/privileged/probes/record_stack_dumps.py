# SPDX-License-Identifier: Apache-2.0
"""Record ``tests/fixtures/bpf_events/{socketlatency,kernellatency}_*.dump`` on this kernel.

    sudo .venv/bin/python -m tests.privileged.probes.record_stack_dumps

The scenarios of the privileged tests are played once in throw-away namespaces; the first
ring-buffer record of each wanted kind is written with what the decoder needs besides the bytes
(TCP state names, the attach points in use) and the Event it decodes to (clock offset 0), so that
``tests/unit/probes/test_<probe>.py`` can decode it anywhere. Review the diff.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.generated.kernellatency import KernellatencyDirection, KernellatencyEvent
from otel_kubeskoop.bpf.generated.socketlatency import SocketlatencyDirection, SocketlatencyEvent
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes import kernellatency, socketlatency
from otel_kubeskoop.probes._decode import KernelNames
from tests.privileged.netnsutil import ip, netns, veth_pair
from tests.privileged.probes import test_kernellatency as kl
from tests.privileged.probes import test_socketlatency as sl
from tests.privileged.probes.conftest import no_ipv6
from tests.privileged.probes.record_dumps import Recorder, event_json

OUT = Path(__file__).resolve().parents[2] / "fixtures" / "bpf_events"
STRUCTS = {"socketlatency": SocketlatencyEvent, "kernellatency": KernellatencyEvent}


def write(probe: str, case: str, what: str, raw: bytes, event: Event, kernel: dict[str, Any]) -> None:
    struct = STRUCTS[probe]
    rec = struct.from_buffer_copy(raw)
    hexed = raw.hex()
    rows = [" ".join(hexed[i + j: i + j + 8] for j in range(0, 32, 8) if i + j < len(hexed))
            for i in range(0, len(hexed), 32)]
    body = {"record": records.to_dict(rec), "kernel": kernel, "event": event_json(event)}
    pretty = re.sub(r"\[[^\[\]{}]*\]",
                    lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                    json.dumps(body, indent=2))
    text = (
        f"# {struct.__name__} (bpf/{probe}.h), {len(raw)} bytes, recorded from bpf/{probe}.bpf.c "
        f"on Linux {platform.release()} {platform.machine()}:\n"
        + "".join(f"# {line}\n" for line in what.splitlines())
        + "# Hex bytes, then a line with a single '.', then JSON: the record (records.to_dict), what\n"
        "# the decoder needs besides the bytes (TCP state names, attach points) and the Event.\n"
        + "\n".join(rows) + "\n.\n" + pretty + "\n"
    )
    path = OUT / f"{probe}_{case}.dump"
    path.write_text(text)
    print(f"wrote {path}")


class StackRecorder(Recorder):
    def first(self, probe: str, netns: int, type_: int, where: Any = lambda r: True) -> bytes:
        self.drain()
        for raw in self.raw[probe]:
            rec = STRUCTS[probe].from_buffer_copy(raw)
            if rec.hdr.netns == netns and rec.hdr.type == type_ and where(rec):
                return raw
        raise LookupError(f"no {probe} record of type {type_} in namespace {netns}")


def points_json(points: dict[int, tuple[str, str]]) -> dict[str, list[str]]:
    return {str(int(k)): list(v) for k, v in points.items()}


def record_socketlatency() -> None:
    rec = StackRecorder()
    try:
        probe = rec.start(socketlatency.SPEC)
        names = KernelNames.from_btf()
        with netns() as a:
            sl.converse(a, read_wait=0.2, write_wait=0.15)
            direction = SocketlatencyDirection
            for case, kind, what in (
                ("readslow_ipv4", direction.SOCKETLATENCY_READ,
                 "100 bytes over loopback that the reader left 200 ms in its receive queue"),
                ("sendslow_ipv4", direction.SOCKETLATENCY_WRITE,
                 "10 bytes written on a socket corked (TCP_CORK) for 150 ms"),
            ):
                raw = rec.first("socketlatency", a.inode, kind)
                state = SocketlatencyEvent.from_buffer_copy(raw).hdr.aux
                kernel = {"tcp_states": {str(state): names.tcp_states[state]},
                          "points": points_json(probe.points)}
                write("socketlatency", case, what, raw,
                      socketlatency.decode_socketlatency(raw, names, probe.points, 0), kernel)
    finally:
        rec.close()


def record_kernellatency() -> None:
    rec = StackRecorder()
    try:
        probe = rec.start(kernellatency.SPEC, kernellatency.SPEC.args(thresholdMs=0.0001))
        with netns() as a, netns() as b:
            no_ipv6(a, b)
            with veth_pair(a, b):
                server = kl.echo_server(b)
                a.python(kl.CLIENT.format(messages=1, size=kl.SIZE))
                server.wait(10)
                raw = rec.first("kernellatency", b.inode, KernellatencyDirection.KERNELLATENCY_RX,
                                lambda r: r.len == kl.SIZE + 52)
                write("kernellatency", "rxslow_ipv4",
                      "a 100-byte TCP segment from a veth to its socket, over a 100 ns threshold",
                      raw, kernellatency.decode_kernellatency(raw, probe.points, 0),
                      {"points": points_json(probe.points)})
    finally:
        rec.close()
    rec = StackRecorder()
    try:
        probe = rec.start(kernellatency.SPEC)  # upstream's 10 ms threshold
        with netns() as a, netns() as b:
            no_ipv6(a, b)
            with veth_pair(a, b) as (dev_a, dev_b):
                a.run("sysctl", "-qw", f"net.ipv4.neigh.{dev_a}.retrans_time_ms=50",
                      f"net.ipv4.neigh.{dev_a}.mcast_solicit=40")
                server = kl.echo_server(b)
                client = a.popen(sys.executable, "-c", kl.HELD_CLIENT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
                assert client.stdout is not None and client.stdin is not None
                assert client.stdout.readline().strip() == b"ready"
                ip("-n", b.name, "link", "set", dev_b, "arp", "off")
                ip("-n", a.name, "neigh", "flush", "dev", dev_a)
                client.stdin.write(b"go\n")
                client.stdin.flush()
                time.sleep(0.25)
                ip("-n", b.name, "link", "set", dev_b, "arp", "on")
                client.wait(10)
                server.wait(10)
                raw = rec.first("kernellatency", a.inode, KernellatencyDirection.KERNELLATENCY_TX,
                                lambda r: r.latency_ns > 200_000_000)
                write("kernellatency", "txslow_arp_ipv4",
                      "a 100-byte TCP segment held in the neighbour queue while the peer\n"
                      "ignored ARP for 250 ms (upstream's 10 ms threshold)",
                      raw, kernellatency.decode_kernellatency(raw, probe.points, 0),
                      {"points": points_json(probe.points)})
    finally:
        rec.close()


def main(which: list[str]) -> None:
    steps = {"socketlatency": record_socketlatency, "kernellatency": record_kernellatency}
    for name in which or list(steps):
        steps[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
