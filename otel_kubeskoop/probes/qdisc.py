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

from pyroute2.netlink import NETLINK_ROUTE

from otel_kubeskoop.netlink.core import DecodeError
from otel_kubeskoop.netlink.tc import Qdisc, read_link_names, read_qdiscs
from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._netlink import NetnsNetlinkProbe
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I


def samples(qdiscs: list[Qdisc], names: dict[int, str], netns: int) -> list[Sample]:
    """Samples per qdisc; qdiscs of an interface gone between the two dumps are left out."""
    totals: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
    for q in qdiscs:
        name = names.get(q.ifindex)
        if name is None:
            continue
        attrs = ((A.NETWORK_INTERFACE_NAME, name), (A.QDISC_KIND, q.kind),
                 (A.QDISC_HANDLE, q.handle_text), (A.QDISC_PARENT, q.parent_text))
        acc = totals.setdefault(attrs, dict.fromkeys((s.key for s in I.QDISC), 0))
        for spec in I.QDISC:
            acc[spec.key] += getattr(q, spec.key)
    return [Sample(spec, acc[spec.key], netns, attrs) for attrs, acc in totals.items() for spec in I.QDISC]


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
    instruments=I.QDISC,
    requires=("rtnetlink (NETLINK_ROUTE)", "CAP_SYS_ADMIN to enter pod namespaces (setns)"),
)
