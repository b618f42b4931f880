# SPDX-License-Identifier: Apache-2.0
"""Record ``tests/fixtures/bpf_events/{packetloss,tcpreset,tcpretrans}_*.dump`` on this kernel.

    sudo .venv/bin/python -m tests.privileged.probes.record_dumps

Each scenario of the privileged tests is played once in throw-away namespaces; the first ring-
buffer record of the wanted kind is written with the kernel names the decoder needs (enum values
and the /proc/kallsyms lines of the addresses it holds) and the Event it decodes to (clock offset
0), so that ``tests/unit/probes/test_<probe>.py`` can decode it anywhere. Review the diff.
"""

from __future__ import annotations

import bisect
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_kubeskoop.bpf import btf, records
from otel_kubeskoop.bpf.generated.packetloss import PacketlossEvent, PacketlossEventType
from otel_kubeskoop.bpf.generated.tcpreset import TcpresetEvent, TcpresetReason, TcpresetType
from otel_kubeskoop.bpf.generated.tcpretrans import TcpretransEvent, TcpretransType
from otel_kubeskoop.bpf.kallsyms import parse_kallsyms, read_kallsyms
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes import packetloss, tcpreset, tcpretrans
from otel_kubeskoop.probes._decode import KernelNames
from tests.privileged.netnsutil import netns, tcp_refused, veth_pair
from tests.privileged.probes.conftest import RAW_ACK, Harness, connect_times_out, iptables, no_ipv6, serve, tcp6_refused

OUT = Path(__file__).resolve().parents[2] / "fixtures" / "bpf_events"
STRUCTS = {"packetloss": PacketlossEvent, "tcpreset": TcpresetEvent,
           "tcpretrans": TcpretransEvent}


def event_json(event: Event) -> dict[str, Any]:
    return {
        "name": event.name,
        "upstream_type": event.upstream_type,
        "netns": event.netns,
        "attributes": [[k, list(v) if isinstance(v, tuple) else v] for k, v in event.attributes],
        "timestamp_ns": event.timestamp_ns,
    }


def kallsyms_lines(addresses: list[int]) -> list[str]:
    """The /proc/kallsyms lines of the symbols holding ``addresses``, and of the next symbol."""
    data = read_kallsyms()
    lines = data.decode(errors="replace").splitlines()
    starts = parse_kallsyms(data).addresses
    wanted: set[int] = set()
    for address in addresses:
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0:
            wanted.update(starts[j] for j in (i, i + 1) if j < len(starts))
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            address = int(parts[0], 16)
            if address in wanted and address not in out:
                out[address] = line
    return [out[a] for a in sorted(out)]


def kernel_json(probe: str, rec: Any) -> dict[str, Any]:
    names = KernelNames.from_btf()
    kernel: dict[str, Any] = {"tcp_states": {str(rec.hdr.aux): names.tcp_states[rec.hdr.aux]}
                              if rec.hdr.aux else {}}
    if probe == "packetloss":
        kernel["skb_drop_reason"] = {str(rec.reason): names.drop_reasons[rec.reason]}
        addresses = [rec.location, *rec.stack[: rec.stack_depth]]
        kernel["kallsyms"] = kallsyms_lines([a for a in addresses if a])
    if probe == "tcpreset" and rec.reason != TcpresetReason.TCPRESET_REASON_NONE:
        kernel["sk_rst_reason"] = {str(rec.reason): names.rst_reasons[rec.reason]}
    return kernel


def write(probe: str, case: str, what: str, raw: bytes, decode: Callable[[bytes, dict[str, Any]], Event]) -> None:
    struct = STRUCTS[probe]
    rec = struct.from_buffer_copy(raw)
    kernel = kernel_json(probe, rec)
    hexed = raw.hex()
    rows = [" ".join(hexed[i + j: i + j + 8] for j in range(0, 32, 8) if i + j < len(hexed))
            for i in range(0, len(hexed), 32)]
    body = {"record": records.to_dict(rec), "kernel": kernel, "event": event_json(decode(raw, kernel))}
    # One line per list of scalars (addresses, stacks, attribute pairs), as the selftest dumps.
    pretty = re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                    json.dumps(body, indent=2))
    text = (
        f"# {struct.__name__} (bpf/{probe}.h), {len(raw)} bytes, recorded from bpf/{probe}.bpf.c on "
        f"Linux {platform.release()} {platform.machine()}:\n"
        + "".join(f"# {line}\n" for line in what.splitlines())
        + "# Hex bytes, then a line with a single '.', then JSON: the record (records.to_dict), the\n"
        "# kernel names it needs (enum values, /proc/kallsyms lines) and the Event it decodes to.\n"
        + "\n".join(rows) + "\n.\n" + pretty + "\n"
    )
    path = OUT / f"{probe}_{case}.dump"
    path.write_text(text)
    print(f"wrote {path}")


def decoder(probe: str) -> Callable[[bytes, dict[str, Any]], Event]:
    from otel_kubeskoop.bpf.kallsyms import Kallsyms

    def decode(raw: bytes, kernel: dict[str, Any]) -> Event:
        names = KernelNames(
            drop_reasons={int(k): v for k, v in kernel.get("skb_drop_reason", {}).items()},
            rst_reasons={int(k): v for k, v in kernel.get("sk_rst_reason", {}).items()},
            tcp_states={int(k): v for k, v in kernel.get("tcp_states", {}).items()},
        )
        if probe == "packetloss":
            return packetloss.decode_packetloss(raw, names, 0, Kallsyms(lines=kernel["kallsyms"]))
        if probe == "tcpreset":
            return tcpreset.TABLE.decode(raw, names, 0)
        return tcpretrans.TABLE.decode(raw, names, 0)

    return decode


class Recorder(Harness):
    """A harness that keeps every raw record, by probe."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, list[bytes]] = {}

    def start(self, spec: Any, args: Any = None, events: bool = True, factory: type | None = None) -> Any:
        probe = super().start(spec, args, events, factory)
        kept = self.raw.setdefault(spec.name, [])
        decode = probe.decode

        def keep(raw: bytes) -> Event:
            kept.append(raw)
            return decode(raw)

        probe.decode = keep  # the ring-buffer callback decodes through self.decode
        return probe

    def first(self, probe: str, netns: int, type_: int, where: Callable[[Any], bool] = lambda r: True) -> bytes:
        self.drain()
        for raw in self.raw[probe]:
            rec = STRUCTS[probe].from_buffer_copy(raw)
            if rec.hdr.netns == netns and rec.hdr.type == type_ and where(rec):
                return raw
        raise LookupError(f"no {probe} record of type {type_} in namespace {netns}")


def main() -> None:
    btf.vmlinux_btf()
    drop, reset, retrans = PacketlossEventType, TcpresetType, TcpretransType
    h = Recorder()
    try:
        h.start(packetloss.SPEC)
        h.start(tcpreset.SPEC)
        h.start(tcpretrans.SPEC)
        with netns() as a:
            tcp_refused(a, 1)
            write("packetloss", "no_socket_ipv4", "a TCP SYN to 127.0.0.1:9 (nothing listening), dropped NO_SOCKET",
                  h.first("packetloss", a.inode, drop.PACKETLOSS_EVENT_DROP), decoder("packetloss"))
            write("tcpreset", "nosock_ipv4", "the RST answering that SYN (tcp_v4_send_reset, sk NULL)",
                  h.first("tcpreset", a.inode, reset.TCPRESET_NOSOCK), decoder("tcpreset"))
            write("tcpreset", "receive_ipv4", "the connecting socket (SYN_SENT) receiving that RST",
                  h.first("tcpreset", a.inode, reset.TCPRESET_RECEIVE), decoder("tcpreset"))
        with netns() as a:
            tcp6_refused(a, 1)
            write("packetloss", "no_socket_ipv6", "a TCP SYN to [::1]:9 (nothing listening), dropped NO_SOCKET",
                  h.first("packetloss", a.inode, drop.PACKETLOSS_EVENT_DROP), decoder("packetloss"))
            write("tcpreset", "nosock_ipv6", "the RST answering that SYN (tcp_v6_send_reset, sk NULL)",
                  h.first("tcpreset", a.inode, reset.TCPRESET_NOSOCK), decoder("tcpreset"))
        with netns() as a:
            server = serve(a, "127.0.0.1", 8080, accept=False)
            a.python(RAW_ACK.format(port=8080, count=1))
            server.kill()
            write("tcpreset", "process_ipv4", "a bare ACK to a listener on 127.0.0.1:8080, answered by a RST (sk = listener)",
                  h.first("tcpreset", a.inode, reset.TCPRESET_PROCESS), decoder("tcpreset"))
        with netns() as a, netns() as b:
            no_ipv6(a, b)
            with veth_pair(a, b):
                iptables(b, "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP")
                a.python("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.231.0.2', 5000))")
                time.sleep(0.1)
                write("packetloss", "netfilter_udp", "a UDP datagram 10.231.0.1 -> 10.231.0.2:5000 dropped by an iptables DROP rule",
                      h.first("packetloss", b.inode, drop.PACKETLOSS_EVENT_DROP, lambda r: r.tuple.protocol == 17),
                      decoder("packetloss"))
                server = serve(a, "10.231.0.1", 8080)
                b.python(
                    "import socket, struct, time\n"
                    "c = socket.create_connection(('10.231.0.1', 8080)); time.sleep(0.1)\n"
                    "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()\n"
                )
                time.sleep(0.1)
                server.kill()
                write("tcpreset", "active_ipv4", "close() with SO_LINGER 0 on an established connection (tcp_send_active_reset)",
                      h.first("tcpreset", b.inode, reset.TCPRESET_ACTIVE), decoder("tcpreset"))
                iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "6000", "-j", "DROP")
                connect_times_out(a, "10.231.0.2", 6000, timeout=1.5)
                write("tcpretrans", "syn_ipv4", "a SYN to 10.231.0.2:6000, dropped there by iptables, sent again",
                      h.first("tcpretrans", a.inode, retrans.TCPRETRANS_SYN), decoder("tcpretrans"))
                server = serve(b, "10.231.0.2", 7000, accept=False)
                iptables(a, "-A", "INPUT", "-p", "tcp", "--sport", "7000", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP")
                connect_times_out(a, "10.231.0.2", 7000, timeout=1.5)
                server.kill()
                write("tcpretrans", "synack_ipv4", "the listener's SYN-ACK, dropped by the client's iptables, sent again",
                      h.first("tcpretrans", b.inode, retrans.TCPRETRANS_SYNACK), decoder("tcpretrans"))
                server = serve(b, "10.231.0.2", 7001)
                client = a.popen(sys.executable, "-c",
                                 "import socket, sys, time\nc = socket.create_connection(('10.231.0.2', 7001))\n"
                                 "c.sendall(b'x'); time.sleep(0.2); print('ready', flush=True)\nsys.stdin.readline()\n"
                                 "c.sendall(b'y' * 100); time.sleep(60)\n",
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                assert client.stdout is not None and client.stdin is not None
                client.stdout.readline()
                iptables(b, "-A", "INPUT", "-p", "tcp", "--dport", "7001", "-j", "DROP")
                client.stdin.write(b"go\n")
                client.stdin.flush()
                time.sleep(0.8)
                client.kill()
                server.kill()
                write("tcpretrans", "fast_ipv4", "a tail loss probe on a connection whose peer drops everything",
                      h.first("tcpretrans", a.inode, retrans.TCPRETRANS_FAST), decoder("tcpretrans"))
                write("tcpretrans", "loss_ipv4", "the retransmission timer's resend on that connection (TCP_CA_Loss)",
                      h.first("tcpretrans", a.inode, retrans.TCPRETRANS_LOSS), decoder("tcpretrans"))
        h.stop("packetloss")
        h.raw["packetloss"] = []
        h.start(packetloss.SPEC, packetloss.PacketlossArgs(enableStack=True))
        with netns() as a:
            tcp_refused(a, 1)
            write("packetloss", "stack_ipv4", "a TCP SYN to 127.0.0.1:9 dropped NO_SOCKET, with enableStack",
                  h.first("packetloss", a.inode, drop.PACKETLOSS_EVENT_DROP), decoder("packetloss"))
    finally:
        h.close()


if __name__ == "__main__":
    main()
