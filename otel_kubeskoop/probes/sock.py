# SPDX-License-Identifier: Apache-2.0
"""sock: TCP socket counts and memory of each network namespace (/proc/<pid>/net/sockstat{,6}).

Upstream reads only the host's sockstat; the file is per namespace (``sock_prot_inuse_get`` sums
per-netns counters), so this probe reads every namespace. ``inuse`` adds the ``TCP6`` line, as
upstream does; ``mem`` is node-wide in the kernel (``tcp_memory_allocated``) and is reported as
read. A missing sockstat6 (IPv6 disabled) means IPv4 only.
"""

from __future__ import annotations

from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import NetnsProcfsProbe, counters
from otel_kubeskoop.procfs.net_sockstat import read_sockstat, read_sockstat6
from otel_kubeskoop.vocabulary.instruments import U, InstrumentSpec
from otel_kubeskoop.topology.netns import Netns

# /proc/<pid>/net/sockstat + sockstat6 (TCP lines). inuse counts IPv4 and IPv6, as upstream.
INSTRUMENTS = tuple(
    InstrumentSpec(f"kubeskoop.sock.{word}", U, unit, desc, key=word, compat=f"kubeskoop_sock_{word}")
    for word, unit, desc in [
        ("inuse", "{socket}", "TCP sockets in use, IPv4 and IPv6"),
        ("orphan", "{socket}", "Orphaned TCP sockets (closed by the application, not yet by TCP)"),
        ("tw", "{socket}", "TCP sockets in TIME_WAIT"),
        ("alloc", "{socket}", "TCP sockets allocated"),
        ("mem", "{page}", "Memory pages used by TCP sockets"),
    ]
)


class SockProbe(NetnsProcfsProbe):
    required = ("net/sockstat",)

    def collect_netns(self, ns: Netns) -> list[Sample]:
        tcp = dict(read_sockstat(ns).get("TCP", {}))
        try:
            tcp6 = read_sockstat6(ns).get("TCP6", {})
        except FileNotFoundError:
            tcp6 = {}
        if "inuse" in tcp:
            tcp["inuse"] += tcp6.get("inuse", 0)
        return counters(INSTRUMENTS, tcp, ns.inode)


SPEC = ProbeSpec(
    name="sock",
    summary="TCP sockets in use, orphaned, in TIME_WAIT, allocated, and their memory, per network namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="two small reads (/proc/<pid>/net/sockstat and sockstat6) per namespace per collection",
    default_enabled=True,
    factory=SockProbe,
    instruments=INSTRUMENTS,
    requires=("/proc/<pid>/net/sockstat",),
)
