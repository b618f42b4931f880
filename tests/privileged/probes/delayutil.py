# SPDX-License-Identifier: Apache-2.0
"""A fixed delay on the packets a namespace sends, without netem (kernels built without
CONFIG_NET_SCH_NETEM, such as the CI's, lack it): an iptables ``NFQUEUE`` rule hands each packet
to a process in the namespace, which holds it for the delay and then accepts it (nfnetlink_queue,
https://www.netfilter.org/projects/libnetfilter_queue/doxygen/html/). Packets keep their order:
each is held the same time from its arrival, and verdicts go out in arrival order."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.privileged.netnsutil import TestNetns

# The holder: raw nfnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_QUEUE), metadata only.
HOLDER = r"""
import collections, select, socket, struct, time
QUEUE, DELAY = {queue}, {delay}
NFNL_SUBSYS_QUEUE, MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 3, 0, 1, 2
NLM_F_REQUEST, NF_ACCEPT = 1, 1

def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + bytes(-n % 4)

def message(kind, attrs):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(QUEUE)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind,
                       NLM_F_REQUEST, 0, 0) + body

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
s.send(message(MSG_CONFIG, [attr(1, struct.pack("!BBH", 1, 0, 0))]))  # NFQA_CFG_CMD: BIND
s.send(message(MSG_CONFIG, [attr(2, struct.pack("!IB", 0, 1))]))      # NFQA_CFG_PARAMS: META
print("ready", flush=True)
held = collections.deque()  # (due, packet id)
while True:
    wait = max(0.0, held[0][0] - time.monotonic()) if held else None
    if select.select([s], [], [], wait)[0]:
        data = s.recv(65536)
        while len(data) >= 16:
            length, kind = struct.unpack_from("=IH", data)
            if kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
                at = 20
                while at < length:
                    alen, atype = struct.unpack_from("=HH", data, at)
                    if atype & 0x7FFF == 1:  # NFQA_PACKET_HDR: packet id first
                        held.append((time.monotonic() + DELAY, struct.unpack_from("!I", data, at + 4)[0]))
                    at += (alen + 3) & ~3
            data = data[(length + 3) & ~3:]
    while held and held[0][0] <= time.monotonic():
        _, packet = held.popleft()
        s.send(message(MSG_VERDICT, [attr(2, struct.pack("!II", NF_ACCEPT, packet))]))
"""


def python_ready(ns: TestNetns, code: str) -> subprocess.Popen[bytes]:
    """Start ``code`` in ``ns`` and return once it has printed ``ready`` (a listener bound, a
    queue bound)."""
    proc = ns.popen(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", \
        f"{code.strip().splitlines()[0]}... in {ns.name} did not start"
    return proc


@contextmanager
def delayed_output(ns: TestNetns, destination: str, seconds: float,
                   queue: int = 7) -> Iterator[None]:
    """Hold every packet ``ns`` sends to ``destination`` for ``seconds`` while inside."""
    proc = python_ready(ns, HOLDER.format(queue=queue, delay=seconds))
    rule = ("OUTPUT", "-d", destination, "-j", "NFQUEUE", "--queue-num", str(queue))
    ns.run("iptables", "-w", "-A", *rule)
    try:
        yield
    finally:
        ns.run("iptables", "-w", "-D", *rule, check=False)
        proc.kill()
        proc.wait(5)
