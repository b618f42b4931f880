# SPDX-License-Identifier: Apache-2.0
"""The per-peer figures of tcprtt and tcpconnect: a kernel map keyed by (namespace, peer address)
(``bpf/include/remote.bpf.h``), emptied every collection and folded here into totals per
(namespace, remote), a remote being the bounded label :mod:`otel_kubeskoop.topology.remotes`
gives an address (through ``ctx.cycle.remote``; without one, loopback or external).

Bounded twice: the kernel map holds the peers seen between two collections (updates that find it
full are counted, ``kubeskoop.agent.bpf.map.full``), and each namespace holds at most
``max_remotes`` remotes; the addresses of any further remote are folded into the ``overflow``
remote, and each address so folded is counted (``kubeskoop.agent.overflow{kubeskoop.cap=
<probe>.remotes}``). A remote keeps its slot for the namespace's life: the totals are cumulative.
The totals of a namespace that went away are forgotten (:mod:`otel_kubeskoop.probes._reconcile`).
Until the Services have been listed once (the classifier's ``settled()``), an address that would be
"external" may be a ClusterIP: its entries are held back, at most :data:`MAX_HELD`, and folded at
a later collection.

An increment the kernel makes to an entry between its read and its removal (the batch
lookup-and-delete takes it out of the table, but a CPU that had just looked it up may still add
to it) is lost: a window of microseconds once per collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_kubeskoop.probe import Sample
from otel_kubeskoop.probes._bpf import ObjectHandle
from otel_kubeskoop.probes._reconcile import NetnsReconciler
from otel_kubeskoop.topology.peers import UNKNOWN
from otel_kubeskoop.topology.remotes import EXTERNAL, OVERFLOW, Remote, RemoteDirectory, address
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

__all__ = ["DEFAULT_MAX_REMOTES", "MAX_HELD", "RemoteTotals", "remote_attributes"]

REMOTES_MAP = "remotes"
REMOTES_FULL_MAP = "remotes_full"
#: remotes per namespace by default (each a few series)
DEFAULT_MAX_REMOTES = 32
#: drained entries held back while the classifier is not settled; past this they are folded
MAX_HELD = 4096

NetnsId = tuple[int, int]  # (inode, cookie)
Flatten = Callable[[Any], list[int]]


#: without the agent's directory (a probe run alone): loopback or external
_UNNAMED = RemoteDirectory(lambda ip: UNKNOWN)


def remote_attributes(remote: Remote) -> tuple[tuple[str, str], ...]:
    """The data point attributes of a remote: its kind, and its namespace and name where it has
    them."""
    kind, namespace, name = remote
    out: tuple[tuple[str, str], ...] = ((A.REMOTE_KIND, kind),)
    if namespace:
        out += ((A.REMOTE_NAMESPACE, namespace),)
    if name:
        out += ((A.REMOTE_NAME, name),)
    return out


class RemoteTotals:
    """Cumulative per-(namespace, remote) totals of a probe's ``remotes`` map.

    ``flatten(value)`` turns a map value into a list of counts (they add up element-wise);
    ``max_remotes`` is the cap per namespace.
    """

    def __init__(self, bpf: ObjectHandle, flatten: Flatten, max_remotes: int = DEFAULT_MAX_REMOTES) -> None:
        self.bpf = bpf
        self.flatten = flatten
        self.max_remotes = max_remotes
        self.overflow = 0  # addresses folded into the overflow remote, summed over collections
        self._totals: dict[NetnsId, dict[Remote, list[int]]] = {}
        self._held: list[tuple[Any, Any]] = []  # entries that may be a Service's, not listed yet
        self._reconciler: NetnsReconciler[NetnsId] = NetnsReconciler(lambda netns: netns)

    @property
    def cap(self) -> str:
        return f"{self.bpf.ctx.name}.remotes"

    def fold(self, entries: list[tuple[Any, Any]], classify: Callable[[str], Remote], hold: bool = False) -> None:
        """Add drained ``(remote_key, value)`` entries to the totals; with ``hold``, keep back the
        external ones (up to :data:`MAX_HELD`) for a later call."""
        for key, value in entries:
            ip = address(key.family, bytes(key.addr))
            if ip is None:
                continue
            remote = classify(ip)
            if hold and remote == EXTERNAL and len(self._held) < MAX_HELD:
                self._held.append((key, value))
                continue
            remotes = self._totals.setdefault((key.netns, key.netns_cookie), {})
            if remote not in remotes and len(remotes) >= self.max_remotes:
                remote = OVERFLOW
                self.overflow += 1
            counts = self.flatten(value)
            total = remotes.get(remote)
            if total is None:
                remotes[remote] = counts
            else:
                for i, n in enumerate(counts):
                    total[i] += n

    def read(self) -> dict[int | None, dict[Remote, list[int]]]:
        """Drain the kernel map into the totals; ``{netns or None: {remote: counts}}`` of the
        namespaces to report, the totals of dead ones forgotten."""
        classify = self.bpf.ctx.cycle.remote or _UNNAMED
        entries, self._held = self._held + self.bpf.map(REMOTES_MAP).pop_all(), []
        self.fold(entries, classify, hold=not getattr(classify, "settled", lambda: True)())
        verdict = self._reconciler.reconcile(list(self._totals), self.bpf.ctx.cycle.namespaces)
        for netns in verdict.gone:
            del self._totals[netns]
        return {inode: self._totals[netns] for netns, inode in verdict.live}

    def self_samples(self) -> list[Sample]:
        """The kernel map's fill and this cap's overflow."""
        return [self.bpf.full_sample(REMOTES_FULL_MAP, REMOTES_MAP),
                Sample(I.AGENT_OVERFLOW, self.overflow, None, ((A.CAP, self.cap),))]
