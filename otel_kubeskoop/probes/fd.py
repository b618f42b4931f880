# SPDX-License-Identifier: Apache-2.0
"""fd: open file descriptors and sockets of each pod's processes (pod scope).

Per pod (hostNetwork pods included): the processes of its cgroup (``cgroup.procs``, one entry per
process, so threads, which share the descriptor table, are counted once), and for each the entries
of ``/proc/<pid>/fd``; ``opensocket`` counts those whose link target is ``socket:[inode]``.
Upstream counted distinct link targets across the pod (two descriptors open on ``/dev/null``
counted once) and emitted ``openfd`` twice per pod, which broke its scrape; here every descriptor
counts, as ``RLIMIT_NOFILE`` does, and each pod has one series.
"""

from __future__ import annotations

import os
from typing import Any

from otel_kubeskoop.probe import Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._pods import pod_processes, require_hierarchies, require_ptrace
from otel_kubeskoop.procfs.pid_fd import FdCount, read_pid_fd
from otel_kubeskoop.vocabulary.instruments import U, InstrumentSpec
from otel_kubeskoop.topology.podprocs import Hierarchy

# Pod scope (Sample.pod_uid): summed over the processes (TGIDs) of the pod's cgroup, hostNetwork pods
# included. Upstream counted distinct link targets (two descriptors on /dev/null counted once);
# these count descriptors, which is what RLIMIT_NOFILE limits.
INSTRUMENTS = (
    InstrumentSpec("kubeskoop.fd.openfd", U, "{file_descriptor}",
                   "File descriptors open in the pod's processes", key="open", compat="kubeskoop_fd_openfd"),
    InstrumentSpec("kubeskoop.fd.opensocket", U, "{file_descriptor}",
                   "File descriptors of the pod's processes that are sockets", key="sockets",
                   compat="kubeskoop_fd_opensocket"),
)


class FdProbe:
    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.hierarchies: list[Hierarchy] = []

    def start(self) -> None:
        self.hierarchies = require_hierarchies(self.ctx)
        require_ptrace(self.ctx, "fd")

    def stop(self) -> None:
        pass

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        reported = False
        for uid, pids in pod_processes(self.ctx, self.hierarchies).pods.items():
            total = FdCount(0, 0)
            for pid in pids:
                try:
                    count = read_pid_fd(os.path.join(self.ctx.proc_root, str(pid)))
                except FileNotFoundError:
                    continue  # exited since the cgroup scan
                except OSError as exc:
                    if not reported:  # one report per collection, not one per process
                        self.ctx.report(exc)
                        reported = True
                    continue
                total = FdCount(total.open + count.open, total.sockets + count.sockets)
            for spec in INSTRUMENTS:
                out.append(Sample(spec, getattr(total, spec.key), pod_uid=uid))
        return out


SPEC = ProbeSpec(
    name="fd",
    summary="Open file descriptors and sockets of each pod's processes (hostNetwork pods included)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.POD,
    overhead=Overhead.MEDIUM,
    overhead_note="per collection: a walk of the pod cgroups, then per pod process one listing of "
                  "/proc/<pid>/fd and one readlink per open descriptor",
    default_enabled=False,
    factory=FdProbe,
    instruments=INSTRUMENTS,
    requires=("cgroup v2 or v1 filesystem", "/proc/<pid>/fd (root or CAP_SYS_PTRACE)"),
)
