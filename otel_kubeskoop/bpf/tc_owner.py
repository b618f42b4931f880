# SPDX-License-Identifier: Apache-2.0
"""Whose TC filters and clsact qdiscs these are, so that two agents on a node (the old and the
new one of a rolling update) never take each other's off, and what a killed agent left is removed.

**Filters.** A probe's filters (flow's) sit at one priority on every hook, and each run of the
agent uses a handle of its own there: the id of its first program, which no other loaded program
has. Two runs thus never replace each other's filter; both see every packet (the programs return
``TC_ACT_UNSPEC``, so the next filter runs). A filter at that priority whose program bears one of
the probe's program names but that is not this run's belongs to another run. It is left alone
while a live process holds its program open (``/proc/<pid>/fdinfo``: :class:`Holders`), and
removed (reaped) once none does: its agent was killed (SIGKILL, the OOM killer) or stopped without
taking it off. That is what the kernel itself knows: the filter keeps the program loaded after its
process is gone, and nothing else does. If the answer is incomplete (an agent's process whose
descriptors cannot be read, or a ``/proc`` that is not the node's), nothing is reaped. Reading
another process's descriptors needs more privilege than that process has (ptrace access): the
node's init, for one, may hold a capability the agent lacks. Such a process counts only if its
command line names otel-kubeskoop: any other process holding a probe's program is no agent, and
cannot make a filter an agent left any more alive.

**Qdiscs.** A clsact qdisc that otel-kubeskoop adds gets a marker: a ``cls_bpf`` filter at priority
:data:`MARK_PRIORITY` on its ingress hook, named :data:`MARK_NAME`, for EtherType
:data:`MARK_PROTOCOL` (IEEE 802 local experimental EtherType 1, which real traffic does not carry,
so the kernel skips it by its protocol and never runs its program). Whoever takes off the last
filter but the marker (the agent that made it, the agent that came after, or ``otel-kubeskoop
cleanup``) removes the qdisc; a qdisc without the marker (another tool's, or one that predates the
agent) is never removed. The record of who made a qdisc is kept in the kernel beside the qdisc,
not in a state file: it lives exactly as long as the qdisc (an interface deleted with its
namespace takes both), needs no shared host directory between the old and the new agent's
containers, and survives a SIGKILL at any point after the qdisc was made. ``tc filter show dev
eth0 ingress`` shows it to an operator. A filter added in the instant between the check that
only the marker is left and the removal goes with the qdisc; the agent that added it puts it
back at its next check.

Everything here except :class:`Holders` runs in the interface's namespace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from otel_kubeskoop.bpf import tc
from otel_kubeskoop.bpf.tc import Direction
from otel_kubeskoop.procfs.pid_fdinfo import read_held_programs

if TYPE_CHECKING:
    from otel_kubeskoop.netlink.tc import TcFilter

__all__ = [
    "DIRECTIONS",
    "MARK_NAME",
    "MARK_PRIORITY",
    "MARK_PROTOCOL",
    "Holders",
    "ensure_clsact",
    "foreign",
    "is_marker",
    "reap",
    "release_clsact",
]

log = logging.getLogger(__name__)

DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")
#: The marker of a clsact qdisc otel-kubeskoop made: priority, EtherType, filter and program name.
MARK_PRIORITY = 0x4B54
MARK_PROTOCOL = 0x88B5
MARK_NAME = "otel_kubeskoop"
_MARK_HANDLE = 1
_KTHREADD_PID = 2
#: How an agent's command line names it (the console script, or ``python -m otel_kubeskoop``).
_AGENT_NAMES = (b"otel-kubeskoop", b"otel_kubeskoop")


class Holders:
    """Which processes hold which BPF programs, read from ``proc_root`` once, on first use.

    ``ignore_cgroup``: processes whose ``cgroup`` file reads so do not count as holders (the agent
    of the container ``otel-kubeskoop cleanup --prestop`` runs in, about to stop). The file names
    cgroups relative to the reader's cgroup namespace, so one read from inside a container
    (``/proc/self/cgroup``) compares with the host's ``/proc/<pid>/cgroup`` read from there too.
    """

    def __init__(self, proc_root: str = "/proc", ignore_cgroup: bytes | None = None) -> None:
        self.proc_root = proc_root
        self.ignore_cgroup = ignore_cgroup
        self._held: set[int] | None = None
        self.incomplete = ""  # why "no holder" cannot be told, if it cannot

    def held(self, prog_id: int) -> bool | None:
        """Whether a live process holds program ``prog_id``; None if that cannot be told."""
        if self._held is None:
            self._held = self._read()
        if prog_id in self._held:
            return True
        return None if self.incomplete else False

    def _read(self) -> set[int]:
        try:
            with open(f"{self.proc_root}/{_KTHREADD_PID}/comm", "rb") as f:
                host_pids = f.read(64).strip() == b"kthreadd"
        except OSError:
            host_pids = False
        if not host_pids:  # another pid namespace's /proc: other agents may be out of sight
            self.incomplete = f"{self.proc_root} does not show the node's processes (no hostPID)"
            return set()
        got = read_held_programs(self.proc_root)
        agents = [pid for pid in got.unreadable if self._is_agent(pid)]
        if agents:
            self.incomplete = (f"descriptors of otel-kubeskoop process {agents[0]} unreadable "
                               f"({len(agents)} in all): CAP_SYS_PTRACE missing?")
        ignored = self.ignore_cgroup
        return {prog_id for prog_id, pids in got.holders.items()
                if ignored is None or any(self._cgroup(pid) != ignored for pid in pids)}

    def _is_agent(self, pid: int) -> bool:
        try:
            with open(f"{self.proc_root}/{pid}/cmdline", "rb") as f:
                cmdline = f.read(4096)
        except OSError:
            return False  # gone
        return any(name in cmdline for name in _AGENT_NAMES)

    def _cgroup(self, pid: int) -> bytes | None:
        try:
            with open(f"{self.proc_root}/{pid}/cgroup", "rb") as f:
                return f.read()
        except OSError:
            return None


def is_marker(f: TcFilter) -> bool:
    return (f.priority, f.protocol, f.kind, f.name) == (MARK_PRIORITY, MARK_PROTOCOL, "bpf", MARK_NAME)


def foreign(present: Iterable[TcFilter], priority: int, programs: Collection[str],
            own_handle: int | None) -> list[TcFilter]:
    """The filters of other runs among ``present``: at ``priority``, another handle than ours,
    running a program named as one of ``programs``."""
    return [f for f in present
            if f.priority == priority and f.handle != own_handle and f.prog_id is not None
            and tc.program_name(f.prog_id) in programs]


def reap(ifindex: int, present: dict[Direction, list[TcFilter]], priority: int,
         programs: Collection[str], own_handle: int | None, holders: Holders) -> tuple[int, int]:
    """Remove the filters of other runs whose programs no live process holds; returns (removed,
    left because live or undecidable)."""
    removed = left = 0
    for direction, filters in present.items():
        for f in foreign(filters, priority, programs, own_handle):
            if holders.held(f.prog_id) is not False:  # type: ignore[arg-type]
                left += 1
                continue
            if tc.detach(ifindex, direction, f.handle, f.priority):
                removed += 1
                log.info("interface %d: removed a TC %s filter (handle %#x, program %d) that no "
                         "process holds", ifindex, direction, f.handle, f.prog_id)
    return removed, left


def ensure_clsact(ifindex: int) -> bool:
    """A clsact qdisc on the interface; one this call adds gets the marker. True if it added one.

    If the marker cannot be added the qdisc is removed again and the error raised: an unmarked
    qdisc of ours would never be removed."""
    if not tc.create_clsact(ifindex):
        return False
    try:
        fd = tc.load_passthrough(MARK_NAME)
        try:
            tc.add_bpf_filter(ifindex, "ingress", fd, _MARK_HANDLE, MARK_PRIORITY, MARK_PROTOCOL,
                              MARK_NAME)
        finally:
            os.close(fd)
    except BaseException:
        tc.destroy_clsact(ifindex)
        raise
    return True


def release_clsact(ifindex: int) -> bool:
    """Remove the interface's clsact qdisc if otel-kubeskoop made it (it has the marker) and no
    filter but the marker is left on it; True if it was removed."""
    filters = [f for d in DIRECTIONS for f in tc.filters(ifindex, d)]
    if not any(is_marker(f) for f in filters) or not all(is_marker(f) for f in filters):
        return False
    return tc.destroy_clsact(ifindex)
