# SPDX-License-Identifier: Apache-2.0
"""io: read/write system calls and storage bytes of each pod's processes (pod scope).

Per pod (hostNetwork pods included): ``syscr``, ``syscw``, ``read_bytes`` and ``write_bytes`` of
``/proc/<tgid>/io`` for every process of its cgroup. One read per process covers its threads (the
kernel sums the thread group), so nothing is counted twice; upstream summed per thread ID.

A plain sum over the live processes (upstream's) drops whenever a process exits, which a counter
must not do. The pod's counter is kept monotonic instead:

- Each process is tracked by ``(pid, starttime)`` (``/proc/<pid>/stat`` field 22), so a reused
  pid is a new process, with its parent's ``(pid, starttime)`` when the parent is in the same pod.
- When a process is gone, its last-seen values are *retired* into the pod's total, unless its
  parent is still alive in the pod: the kernel adds a reaped child's counters to its parent's
  ``/proc/<pid>/io`` (``wait_task_zombie``), so the parent carries them on, and retiring them as
  well would count them twice.
- The pod's value is retired + the live processes' sums, never reported below what was reported
  before: between a child's exit and its parent's ``wait()`` the sum dips, and the high-water mark
  holds the series flat until the parent's counters catch up.

What is lost: I/O of a process that starts and exits between two collections, unless a parent in
the pod reaps it; and the I/O between a process's last collection and its exit when nothing in the
pod reaps it (containerd-shim reaps a container's init). A pod's counter starts, the first time the
agent sees it, at the sum of its live processes' totals (the pipeline takes that as the baseline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._pods import pod_processes, require_hierarchies, require_ptrace
from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.pid_io import read_pid_io
from otel_kubeskoop.procfs.pid_stat import read_pid_stat
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec
from otel_kubeskoop.topology.podprocs import Hierarchy

# /proc/<tgid>/io summed over the pod's processes; kept monotonic when processes exit (probes/io.py).
INSTRUMENTS = tuple(
    InstrumentSpec(f"kubeskoop.io.{word}", C, unit, desc, key=key, compat=f"kubeskoop_io_{word}")
    for word, key, unit, desc in [
        ("readsyscall", "syscr", "{syscall}", "Read-class system calls made by the pod's processes"),
        ("writesyscall", "syscw", "{syscall}", "Write-class system calls made by the pod's processes"),
        ("readbytes", "read_bytes", "By", "Bytes the pod's processes caused to be read from storage"),
        ("writebytes", "write_bytes", "By", "Bytes the pod's processes caused to be written to storage"),
    ]
)


_KEYS = tuple(spec.key for spec in INSTRUMENTS)
ProcKey = tuple[int, int]  # (pid, starttime)


@dataclass(slots=True)
class _Proc:
    values: tuple[int, ...]  # in _KEYS order
    parent: ProcKey | None  # the parent, when it was in the same pod


@dataclass(slots=True)
class _Pod:
    procs: dict[ProcKey, _Proc] = field(default_factory=dict)
    retired: list[int] = field(default_factory=lambda: [0] * len(_KEYS))
    reported: list[int] = field(default_factory=lambda: [0] * len(_KEYS))

    def update(self, live: dict[ProcKey, _Proc]) -> list[int]:
        for key, proc in self.procs.items():
            if key in live or (proc.parent is not None and proc.parent in live):
                continue  # still here, or its parent carries its counters once it reaps it
            self.retired = [r + v for r, v in zip(self.retired, proc.values)]
        self.procs = live
        total = list(self.retired)
        for proc in live.values():
            total = [t + v for t, v in zip(total, proc.values)]
        self.reported = [max(r, t) for r, t in zip(self.reported, total)]
        return self.reported


class IoProbe:
    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.hierarchies: list[Hierarchy] = []
        self._pods: dict[str, _Pod] = {}

    def start(self) -> None:
        self.hierarchies = require_hierarchies(self.ctx)
        require_ptrace(self.ctx, "io")

    def stop(self) -> None:
        self._pods.clear()

    def _read(self, pids: tuple[int, ...], failures: list[BaseException]) -> dict[ProcKey, _Proc]:
        seen: dict[int, tuple[int, int, tuple[int, ...]]] = {}  # pid -> (starttime, ppid, values)
        for pid in pids:
            source = ProcDir(os.path.join(self.ctx.proc_root, str(pid)))
            try:
                stat = read_pid_stat(source)
                io = read_pid_io(source)
            except FileNotFoundError:
                continue  # exited since the cgroup scan
            except (OSError, ParseError) as exc:
                failures.append(exc)
                continue
            seen[pid] = (stat.starttime, stat.ppid, tuple(getattr(io, k) for k in _KEYS))
        live: dict[ProcKey, _Proc] = {}
        for pid, (start, ppid, values) in seen.items():
            parent = (ppid, seen[ppid][0]) if ppid in seen else None
            live[(pid, start)] = _Proc(values, parent)
        return live

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        failures: list[BaseException] = []
        pods = pod_processes(self.ctx, self.hierarchies).pods
        for uid, pids in pods.items():
            values = self._pods.setdefault(uid, _Pod()).update(self._read(pids, failures))
            for spec, value in zip(INSTRUMENTS, values):
                out.append(Sample(spec, value, pod_uid=uid))
        for uid in [u for u in self._pods if u not in pods]:
            del self._pods[uid]  # the pod's cgroup is gone: so is its series
        if failures:
            self.ctx.report(failures[0])  # one report per collection, not one per process
        return out


SPEC = ProbeSpec(
    name="io",
    summary="Read/write system calls and storage bytes of each pod's processes (hostNetwork pods included)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.POD,
    overhead=Overhead.LOW,
    overhead_note="per collection: a walk of the pod cgroups, then per pod process one read of "
                  "/proc/<pid>/stat and one of /proc/<pid>/io",
    default_enabled=False,
    factory=IoProbe,
    instruments=INSTRUMENTS,
    requires=("cgroup v2 or v1 filesystem", "/proc/<pid>/io (root or CAP_SYS_PTRACE)"),
)
