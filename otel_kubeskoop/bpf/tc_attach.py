# SPDX-License-Identifier: Apache-2.0
"""A probe's TC filters on every wanted interface of every network namespace, kept in step with
the namespace scan.

:class:`Attacher` owns one (handle, priority) pair on the ingress and egress hooks of each
interface it attaches to. Each :meth:`~Attacher.sync` compares a namespace's interfaces
(``/proc/<pid>/net/dev``) with what is attached: new namespaces and interfaces get the filters,
vanished ones are forgotten (the kernel removed their qdiscs with them), and every ``reverify``
seconds the filters of an unchanged namespace are checked and put back if missing. The TC calls
of one namespace run inside it, through :func:`~otel_kubeskoop.topology.nsexec.run_in_netns`.

A filter at our pair whose program has one of our program names but is not this run's was left by
an earlier agent that did not stop cleanly: it is replaced (or removed from an interface no longer
wanted), and counted. A filter at our pair that belongs to another program is never touched. A
clsact qdisc is created when the interface had none, and removed when the filters are taken off
only if this run created it and no other filter is on it; a qdisc the attacher found is never
removed.

Filters that cannot be taken off are reported (:class:`LeftAttached`, naming the namespace and the
interfaces) and stay in :attr:`Attacher.state`, so they are tried again and never forgotten while
they may still be there.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_kubeskoop.bpf import tc
from otel_kubeskoop.bpf.tc import Direction
from otel_kubeskoop.procfs.net_dev import read_net_dev
from otel_kubeskoop.topology import nsexec

__all__ = ["REVERIFY_SECONDS", "Attached", "Attacher", "Iface", "LeftAttached", "interface_names"]

log = logging.getLogger(__name__)

#: Default seconds between checks that the filters of an unchanged namespace are still there.
REVERIFY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Iface:
    ifindex: int
    created_qdisc: bool  # this run added the clsact qdisc (so it may remove it)


@dataclass(frozen=True, slots=True)
class Attached:
    ifaces: dict[str, Iface]
    checked: float  # monotonic time of the last check


class LeftAttached(OSError):
    """Filters of ``owner`` that could not be taken off interfaces ``names`` of namespace
    ``inode``; ``__cause__`` says why."""

    def __init__(self, owner: str, inode: int, names: Iterable[str], cause: BaseException) -> None:
        self.owner = owner
        self.inode = inode
        self.names = tuple(sorted(names))
        super().__init__(f"{owner}: TC filters left on {', '.join(self.names)} in network namespace "
                         f"{inode}: {cause}")
        self.__cause__ = cause


def interface_names(ns: Any) -> set[str]:
    """The namespace's interface names, from its ``net/dev``."""
    return set(read_net_dev(ns))


class Attacher:
    """The filters of one probe (``owner``) on every wanted interface of every namespace.

    ``programs``: direction -> the program's name (how filters of an earlier run are recognised);
    ``prog_fds``/``prog_ids``: direction -> this run's loaded program's fd / id; ``wanted(ns,
    names)``: the interfaces of namespace ``ns`` (whose interfaces are ``names``) to attach to;
    ``handle``/``priority``: the filters' pair on every hook.
    """

    def __init__(self, owner: str, programs: Mapping[Direction, str], prog_fds: Mapping[Direction, int],
                 prog_ids: Mapping[Direction, int], wanted: Callable[[Any, set[str]], set[str]], *,
                 handle: int, priority: int, reverify: float = REVERIFY_SECONDS) -> None:
        self.owner = owner
        self.programs = dict(programs)
        self.prog_fds = dict(prog_fds)
        self.prog_ids = dict(prog_ids)
        self.handle = handle
        self.priority = priority
        self.reverify = reverify
        self._wanted = wanted
        self.state: dict[int, Attached] = {}
        self.stale_removed = 0  # filters of an earlier agent replaced or removed

    def interfaces(self, netns: int) -> int:
        st = self.state.get(netns)
        return len(st.ifaces) if st else 0

    def sync(self, namespaces: Mapping[int, Any], now: float | None = None) -> list[BaseException]:
        """Attach to new namespaces and interfaces, check old ones every ``reverify`` seconds,
        forget vanished ones. Returns the failures (one interface's failure does not stop the
        rest)."""
        now = time.monotonic() if now is None else now
        errors: list[BaseException] = []
        jobs, inodes, fds = [], [], []
        try:
            for inode, ns in namespaces.items():
                try:
                    names = interface_names(ns)
                except (OSError, LookupError, ValueError) as exc:  # gone meanwhile, or unreadable
                    log.debug("%s: interfaces of namespace %d: %s", self.owner, inode, exc)
                    continue
                wanted = self._wanted(ns, names)
                st = self.state.get(inode)
                first = st is None
                if st is not None and set(st.ifaces) == wanted and (
                        not wanted or now - st.checked < self.reverify):
                    continue
                if first and not (names - {"lo"}):
                    self.state[inode] = Attached({}, now)  # only lo: nothing to attach or sweep
                    continue
                try:
                    fd = ns.open_nsfd()
                except (OSError, LookupError) as exc:
                    log.debug("%s: cannot enter namespace %d: %s", self.owner, inode, exc)
                    continue
                fds.append(fd)
                inodes.append(inode)
                jobs.append((fd, functools.partial(self._sync_in_netns, inode, names, wanted, st,
                                                   first, now)))
            results = nsexec.run_in_netns(jobs, what=f"{self.owner}: TC attach")
        finally:
            for fd in fds:
                os.close(fd)
        for inode, result in zip(inodes, results):
            if isinstance(result, BaseException):
                errors.append(result)
                continue
            attached, stale, failures = result
            self.state[inode] = attached
            self.stale_removed += stale
            errors += failures
        for inode in [i for i in self.state if i not in namespaces]:
            del self.state[inode]  # its interfaces, qdiscs and filters went with it
        return errors

    def _sync_in_netns(self, inode: int, names: set[str], wanted: set[str], st: Attached | None,
                       first: bool, now: float) -> tuple[Attached, int, list[BaseException]]:
        """Runs inside the namespace: attach, check, detach; (new state, stale removed, failures)."""
        old = dict(st.ifaces) if st is not None else {}
        new: dict[str, Iface] = {}
        stale = 0
        failures: list[BaseException] = []
        if first:  # filters of an earlier agent on interfaces we do not want
            for name in sorted(names - wanted - {"lo"}):
                try:
                    stale += self._remove_stale(socket.if_nametoindex(name))
                except OSError as exc:
                    log.debug("%s: %s: %s", self.owner, name, exc)
        for name in sorted(wanted):
            try:
                ifindex = socket.if_nametoindex(name)
            except OSError:
                continue  # gone since net/dev was read
            cur = old.get(name)
            try:
                if cur is not None and cur.ifindex == ifindex and all(
                    tc.query(ifindex, d, self.handle, self.priority) == self.prog_ids[d]
                    for d in self.programs
                ):
                    new[name] = cur
                    continue
                created = tc.create_clsact(ifindex)
                if cur is not None and cur.ifindex == ifindex:
                    created = created or cur.created_qdisc
                for direction in self.programs:
                    there = tc.query(ifindex, direction, self.handle, self.priority)
                    if there is not None and there != self.prog_ids[direction]:
                        owner = tc.program_name(there)
                        if owner not in self.programs.values():
                            raise OSError(f"{self.owner}: interface {name}: TC {direction} filter "
                                          f"{self.handle:#x} prio {self.priority:#x} belongs to "
                                          f"program {owner!r} (id {there}); not replaced")
                        stale += 1
                    tc.attach(ifindex, direction, self.prog_fds[direction], self.handle, self.priority)
                new[name] = Iface(ifindex, created)
            except OSError as exc:
                failures.append(exc)
        for name, cur in old.items():
            if name in new or not _still_there(name, cur):
                continue  # kept, or gone and our filters with it
            try:  # an interface no longer wanted that still exists: take our filters off
                self._detach(name, cur)
            except (OSError, ValueError) as exc:  # ValueError: an undecodable filter dump
                failures.append(LeftAttached(self.owner, inode, [name], exc))
                new[name] = cur  # still ours: tried again at the next sync
        return Attached(new, now), stale, failures

    def _remove_stale(self, ifindex: int) -> int:
        removed = 0
        for direction in self.programs:
            there = tc.query(ifindex, direction, self.handle, self.priority)
            if there is not None and tc.program_name(there) in self.programs.values():
                removed += tc.detach(ifindex, direction, self.handle, self.priority)
        return removed

    def _detach(self, name: str, iface: Iface) -> None:
        """Take our filters off (inside the namespace); remove the qdisc if we made it and it is
        now empty."""
        for direction in self.programs:
            tc.detach(iface.ifindex, direction, self.handle, self.priority)
        if iface.created_qdisc:
            others = tc.filters(iface.ifindex, "ingress") + tc.filters(iface.ifindex, "egress")
            if others:
                log.info("%s: %s: leaving the clsact qdisc, which now has other filters",
                         self.owner, name)
            else:
                tc.destroy_clsact(iface.ifindex)

    def detach_all(self, namespaces: Mapping[int, Any]) -> list[BaseException]:
        """Take every filter off (at stop); returns one :class:`LeftAttached` per namespace or
        interface whose filters could not be taken off, which stay in :attr:`state` (a later call
        tries them again). Namespaces no longer in the scan are forgotten: their filters went with
        them, or stay until the namespace goes, as nothing can enter it any more."""
        errors: list[BaseException] = []
        jobs, inodes, fds = [], [], []
        try:
            for inode, st in list(self.state.items()):
                ns = namespaces.get(inode)
                if ns is None or not st.ifaces:
                    del self.state[inode]
                    continue
                try:
                    fd = ns.open_nsfd()
                except (OSError, LookupError) as exc:
                    errors.append(LeftAttached(self.owner, inode, st.ifaces, exc))
                    continue
                fds.append(fd)
                inodes.append(inode)
                jobs.append((fd, functools.partial(self._detach_in_netns, inode, st)))
            results = nsexec.run_in_netns(jobs, what=f"{self.owner}: TC detach")
        finally:
            for fd in fds:
                os.close(fd)
        for inode, result in zip(inodes, results):
            st = self.state[inode]
            if isinstance(result, BaseException):  # could not enter the namespace, or timed out
                errors.append(LeftAttached(self.owner, inode, st.ifaces, result))
                continue
            left, failures = result
            errors += failures
            if left:
                self.state[inode] = Attached(left, st.checked)
            else:
                del self.state[inode]
        return errors

    def _detach_in_netns(self, inode: int,
                         st: Attached) -> tuple[dict[str, Iface], list[BaseException]]:
        """Runs inside the namespace: (the interfaces still attached, why each is)."""
        left: dict[str, Iface] = {}
        failures: list[BaseException] = []
        for name, iface in st.ifaces.items():
            if not _still_there(name, iface):
                continue  # gone, and our filters with it
            try:
                self._detach(name, iface)
            except (OSError, ValueError) as exc:  # ValueError: an undecodable filter dump
                left[name] = iface
                failures.append(LeftAttached(self.owner, inode, [name], exc))
        return left, failures


def _still_there(name: str, iface: Iface) -> bool:
    """Whether interface ``name`` of the calling thread's namespace is still ``iface``."""
    try:
        return socket.if_nametoindex(name) == iface.ifindex
    except OSError:
        return False
