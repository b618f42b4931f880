# SPDX-License-Identifier: Apache-2.0
"""Which entries of a kernel map keyed by network namespace to report, and which to delete.

Every eBPF probe that keys by namespace (packetloss, tcpreset and tcpretrans counters, the latency
histograms, flow's flows) keys by the namespace's inode and the low 32 bits of its never-reused id
(``netns_cookie``, ``bpf/include/netns.bpf.h``), and reconciles its map with the agent's namespace
scan (``ctx.cycle.namespaces``) here, once per collection:

- the kernel hands a freed inode number to the next namespace, so when two ids share an inode
  only the newest (largest cookie) is live: the older namespace's entries are deleted at once
  (otherwise a new pod would inherit a dead one's counts);
- a namespace missing from the scan at :data:`ABSENT_COLLECTIONS` collections in a row went
  away: its entries are deleted, so that the map holds live namespaces only. The grace of one
  collection keeps a namespace created between the scan and the read; meanwhile its entries are
  neither reported (it has no resource any more) nor deleted;
- inode 0 (the kernel could not tell) is reported as node scope;
- before the first scan everything is reported and nothing but stale ids deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["ABSENT_COLLECTIONS", "NetnsReconciler", "Reconciled"]

#: collections a namespace may be missing from the scan before its entries are deleted
ABSENT_COLLECTIONS = 2

K = TypeVar("K")
NetnsId = tuple[int, int]  # (inode, cookie)


@dataclass
class Reconciled(Generic[K]):
    """One collection's verdict: ``live`` entries with the namespace to report them under (None:
    node scope), and the ``gone`` ones to delete from the map. Entries in neither are kept in the
    map but not reported (their namespace is missing, not yet long enough)."""

    live: list[tuple[K, int | None]] = field(default_factory=list)
    gone: list[K] = field(default_factory=list)


def _key_netns(key: object) -> NetnsId:
    return key.netns, key.netns_cookie  # type: ignore[attr-defined]


class NetnsReconciler(Generic[K]):
    """Reconciles one map's entries with the namespace scan, collection after collection.

    ``netns_of(entry)`` gives an entry's (inode, cookie); by default its ``netns`` and
    ``netns_cookie`` members (a generated ctypes key).
    """

    def __init__(self, netns_of: Callable[[K], NetnsId] = _key_netns) -> None:
        self._netns_of = netns_of
        self._absent: dict[int, int] = {}  # inode -> consecutive collections missing

    def reconcile(self, entries: Iterable[K], known: Collection[int]) -> Reconciled[K]:
        entries = list(entries)
        ids = [self._netns_of(entry) for entry in entries]
        newest: dict[int, int] = {}
        for inode, cookie in ids:
            if cookie > newest.get(inode, -1):
                newest[inode] = cookie
        out: Reconciled[K] = Reconciled()
        current = []
        for entry, (inode, cookie) in zip(entries, ids, strict=True):
            if cookie != newest[inode]:
                out.gone.append(entry)  # an earlier namespace that had this inode: dead
            else:
                current.append((entry, inode))
        if not known:
            out.live = [(entry, inode or None) for entry, inode in current]
            return out
        self._absent = self._still_absent({i for _, i in current if i and i not in known})
        for entry, inode in current:
            if not inode:
                out.live.append((entry, None))
            elif inode in known:
                out.live.append((entry, inode))
            elif inode not in self._absent:
                out.gone.append(entry)
        return out

    def _still_absent(self, missing: Iterable[int]) -> Mapping[int, int]:
        """The namespaces ``missing`` now that have been missing fewer than ABSENT_COLLECTIONS
        times, with their count; the other ``missing`` ones are gone."""
        out: dict[int, int] = {}
        for inode in missing:
            misses = self._absent.get(inode, 0) + 1
            if misses < ABSENT_COLLECTIONS:
                out[inode] = misses
        return out
