# SPDX-License-Identifier: Apache-2.0
"""qdisc: counters of every queueing discipline of every interface, per namespace.

One ``RTM_GETQDISC`` dump and one ``RTM_GETLINK`` dump per namespace, both on a netlink socket
that lives in that namespace, so interface names are the namespace's own (upstream resolves the
index in its own namespace and can name a pod's ``eth0`` after a host interface). Each qdisc is
its own series, identified by interface, kind, handle and parent as ``tc qdisc show`` prints them:
a classful root and its children are reported side by side, never summed into one number (a root's
counters already include what passed through its children). Upstream's ``eth*`` filter is not
applied: every interface is reported.

On the compat endpoint the values are summed per namespace over every qdisc except ``lo``'s, as
upstream sums over the qdiscs it sees (parents and children together).
"""

from __future__ import annotations

import socket

from otel_kubeskoop.netlink.core import NETLINK_ROUTE, DecodeError
from otel_kubeskoop.netlink.tc import Qdisc, read_link_names, read_qdiscs
from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._netlink import NetnsNetlinkProbe
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import C, NO_LOOPBACK, U, InstrumentSpec

QDISC_KIND = "kubeskoop.qdisc.kind"  # tbf, fq_codel, noqueue, ...
QDISC_HANDLE = "kubeskoop.qdisc.handle"  # 8001:
QDISC_PARENT = "kubeskoop.qdisc.parent"  # root, 1:10, ffff:fff1 (ingress)

# qdisc: RTM_GETQDISC per namespace, one series per qdisc (parent and child qdiscs apart).
_QDISC = (A.NETWORK_INTERFACE_NAME, QDISC_KIND, QDISC_HANDLE, QDISC_PARENT)
INSTRUMENTS = tuple(
    InstrumentSpec(f"kubeskoop.qdisc.{word}", kind, unit, desc, _QDISC, key=word,
                   compat=f"kubeskoop_qdisc_{word}" if compat else None, compat_exclude=NO_LOOPBACK)
    for word, kind, unit, desc, compat in [
        ("bytes", C, "By", "Bytes the qdisc sent", True),
        ("packets", C, "{packet}", "Packets the qdisc sent", True),
        ("drops", C, "{packet}", "Packets the qdisc dropped (queue full, policer, AQM)", True),
        ("requeues", C, "{packet}", "Packets the driver handed back to the qdisc to send again", False),
        ("overlimits", C, "{event}", "Times the qdisc was over its limit (a shaper delayed or dropped a packet)", True),
        ("qlen", U, "{packet}", "Packets queued in the qdisc now", True),
        ("backlog", U, "By", "Bytes queued in the qdisc now", True),
    ]
)


def samples(qdiscs: list[Qdisc], names: dict[int, str], netns: int) -> list[Sample]:
    """Samples per qdisc; qdiscs of an interface gone between the two dumps are left out."""
    totals: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
    for q in qdiscs:
        name = names.get(q.ifindex)
        if name is None:
            continue
        attrs = ((A.NETWORK_INTERFACE_NAME, name), (QDISC_KIND, q.kind),
                 (QDISC_HANDLE, q.handle_text), (QDISC_PARENT, q.parent_text))
        acc = totals.setdefault(attrs, dict.fromkeys((s.key for s in INSTRUMENTS), 0))
        for spec in INSTRUMENTS:
            acc[spec.key] += getattr(q, spec.key)
    return [Sample(spec, acc[spec.key], netns, attrs) for attrs, acc in totals.items() for spec in INSTRUMENTS]


class QdiscProbe(NetnsNetlinkProbe):
    PROTOCOL = NETLINK_ROUTE

    def check(self, sock: socket.socket) -> None:
        read_qdiscs(sock, self._next_seq())

    def unavailable(self, exc: OSError | DecodeError) -> str:
        return f"rtnetlink RTM_GETQDISC failed: {exc}"

    def read(self, inode: int, sock: socket.socket) -> list[Sample]:
        seq = self._next_seq()
        # Qdiscs first: an interface added in between has a name but no qdisc here, one removed in
        # between is left out (no name), so no qdisc is ever misnamed.
        qdiscs = read_qdiscs(sock, seq)
        names = read_link_names(sock, seq + 1)
        return samples(qdiscs, names, inode)


SPEC = ProbeSpec(
    name="qdisc",
    summary="Bytes, packets, drops, requeues, overlimits and queue length of every qdisc, per namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.NETLINK,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="two rtnetlink dumps per namespace per collection (qdiscs, interface names); cost "
                  "scales with namespaces x interfaces; one netlink socket per namespace",
    default_enabled=False,
    factory=QdiscProbe,
    instruments=INSTRUMENTS,
    requires=("rtnetlink (NETLINK_ROUTE)", "CAP_SYS_ADMIN to enter pod namespaces (setns)"),
)
