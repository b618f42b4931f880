# SPDX-License-Identifier: Apache-2.0
"""A probe's TC filters on every wanted interface of every network namespace, kept in step with
the namespace scan.

:class:`Attacher` owns one (handle, priority) pair on the ingress and egress hooks of each
interface it attaches to; the handle is this run's own (:mod:`otel_kubeskoop.bpf.tc_owner` says
why and how other runs' filters are told apart). Each :meth:`~Attacher.sync` compares a
namespace's interfaces (``/proc/<pid>/net/dev``) with what is attached: new namespaces and
interfaces get the filters, vanished ones are forgotten (the kernel removed their qdiscs with
them), and every ``reverify`` seconds the filters of an unchanged namespace are checked and put
back if missing. The TC calls of one namespace run inside it, through
:func:`~otel_kubeskoop.topology.nsexec.run_in_netns`.

Whenever an interface is checked (at first sight every interface but ``lo``, later the wanted
ones), filters of other runs whose programs no live process holds are removed and counted
(:attr:`Attacher.reaped`); those of a live agent are never touched. A clsact qdisc is added (with
otel-kubeskoop's marker) when the interface has none, and removed when our filters are taken off
only if it has the marker and nothing else is left on it. A filter at our own pair that runs some
other program is never replaced.

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
from typing import TYPE_CHECKING, Any

from otel_kubeskoop.bpf import tc, tc_owner
from otel_kubeskoop.bpf.tc import Direction
from otel_kubeskoop.procfs.net_dev import read_net_dev
from otel_kubeskoop.topology import nsexec

if TYPE_CHECKING:
    from otel_kubeskoop.netlink.tc import TcFilter

__all__ = ["REVERIFY_SECONDS", "Attached", "Attacher", "Iface", "LeftAttached", "interface_names"]

log = logging.getLogger(__name__)

#: Default seconds between checks that the filters of an unchanged namespace are still there.
REVERIFY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Iface:
    ifindex: int


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

    ``programs``: direction -> the program's name (how filters of other runs are recognised);
    ``prog_fds``/``prog_ids``: direction -> this run's loaded program's fd / id; ``wanted(ns,
    names)``: the interfaces of namespace ``ns`` (whose interfaces are ``names``) to attach to;
    ``handle``/``priority``: the filters' pair on every hook (the handle this run's own);
    ``proc_root``: where to find which processes hold which programs.
    """

    def __init__(self, owner: str, programs: Mapping[Direction, str], prog_fds: Mapping[Direction, int],
                 prog_ids: Mapping[Direction, int], wanted: Callable[[Any, set[str]], set[str]], *,
                 handle: int, priority: int, reverify: float = REVERIFY_SECONDS,
                 proc_root: str = "/proc") -> None:
        self.owner = owner
        self.programs = dict(programs)
        self.prog_fds = dict(prog_fds)
        self.prog_ids = dict(prog_ids)
        self.handle = handle
        self.priority = priority
        self.reverify = reverify
        self.proc_root = proc_root
        self._wanted = wanted
        self.state: dict[int, Attached] = {}
        self.reaped = 0  # filters of other runs removed because no live process held them
        self._told = ""  # why other runs' filters could not be judged, as last logged

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
        holders = tc_owner.Holders(self.proc_root)  # read at most once, when first asked
        others = 0
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
                                                   first, now, holders)))
            results = nsexec.run_in_netns(jobs, what=f"{self.owner}: TC attach")
        finally:
            for fd in fds:
                os.close(fd)
        for inode, result in zip(inodes, results):
            if isinstance(result, BaseException):
                errors.append(result)
                continue
            attached, (reaped, left), failures = result
            self.state[inode] = attached
            self.reaped += reaped
            others += left
            errors += failures
        if holders.incomplete and others and holders.incomplete != self._told:
            self._told = holders.incomplete
            log.warning("%s: %d TC filters of other agents left in place, live or not: %s",
                        self.owner, others, holders.incomplete)
        for inode in [i for i in self.state if i not in namespaces]:
            del self.state[inode]  # its interfaces, qdiscs and filters went with it
        return errors

    def _sync_in_netns(self, inode: int, names: set[str], wanted: set[str], st: Attached | None,
                       first: bool, now: float, holders: tc_owner.Holders,
                       ) -> tuple[Attached, tuple[int, int], list[BaseException]]:
        """Runs inside the namespace: reap, attach, check, detach; (new state, (filters of other
        runs removed, left), failures)."""
        old = dict(st.ifaces) if st is not None else {}
        new: dict[str, Iface] = {}
        reaped = others = 0
        failures: list[BaseException] = []
        # At first sight, filters that agents no longer alive left on any interface; later, on the
        # interfaces we attach to.
        checked = wanted | (names - {"lo"}) if first else wanted
        for name in sorted(checked):
            try:
                ifindex = socket.if_nametoindex(name)
            except OSError:
                continue  # gone since net/dev was read
            cur = old.get(name)
            try:
                present = {d: tc.filters(ifindex, d) for d in self.programs}
                removed, left = tc_owner.reap(ifindex, present, self.priority,
                                              set(self.programs.values()), self.handle, holders)
                reaped, others = reaped + removed, others + left
                if name not in wanted:
                    if any(tc_owner.is_marker(f) for f in present["ingress"]):
                        tc_owner.release_clsact(ifindex)  # one a dead agent made and left
                    continue
                missing = [d for d in self.programs if not self._ours(present[d], d, name)]
                if cur is not None and cur.ifindex == ifindex and not missing:
                    new[name] = cur
                    continue
                tc_owner.ensure_clsact(ifindex)
                for direction in missing:
                    tc.attach(ifindex, direction, self.prog_fds[direction], self.handle, self.priority)
                new[name] = Iface(ifindex)
            except (OSError, ValueError) as exc:  # ValueError: an undecodable filter dump
                failures.append(exc)
        for name, cur in old.items():
            if name in new or not _still_there(name, cur):
                continue  # kept, or gone and our filters with it
            try:  # an interface no longer wanted that still exists: take our filters off
                self._detach(cur)
            except (OSError, ValueError) as exc:
                failures.append(LeftAttached(self.owner, inode, [name], exc))
                new[name] = cur  # still ours: tried again at the next sync
        return Attached(new, now), (reaped, others), failures

    def _ours(self, present: list[TcFilter], direction: Direction, name: str) -> bool:
        """Whether our filter is on the hook; an error if our pair runs another program."""
        for f in present:
            if (f.handle, f.priority) != (self.handle, self.priority):
                continue
            if f.prog_id == self.prog_ids[direction]:
                return True
            owner = tc.program_name(f.prog_id) if f.prog_id is not None else None
            if owner not in self.programs.values():
                raise OSError(f"{self.owner}: interface {name}: TC {direction} filter "
                              f"{self.handle:#x} prio {self.priority:#x} belongs to program "
                              f"{owner!r} (id {f.prog_id}); not replaced")
        return False

    def _detach(self, iface: Iface) -> None:
        """Take our filters off (inside the namespace), then the qdisc if otel-kubeskoop made it
        and nothing else is on it."""
        for direction in self.programs:
            tc.detach(iface.ifindex, direction, self.handle, self.priority)
        tc_owner.release_clsact(iface.ifindex)

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
                self._detach(iface)
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
