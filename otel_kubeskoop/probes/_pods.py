# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the pod-scope probes (``fd``, ``io``): the pods' processes, found once a cycle.

Both probes need every pod's processes; the scan of the cgroup filesystem
(:mod:`otel_kubeskoop.topology.podprocs`) runs once per cycle, for whichever of them collects
first (the cycle keeps it), and its failures are reported by that probe only.
"""

from __future__ import annotations

import os

from otel_kubeskoop.probe import ProbeContext, Unavailable
from otel_kubeskoop.topology.podprocs import Hierarchy, PodProcesses, find_hierarchies


def require_hierarchies(ctx: ProbeContext) -> list[Hierarchy]:
    """The cgroup hierarchies to scan, or :class:`Unavailable` naming the root looked at."""
    hierarchies = find_hierarchies(ctx.cgroup_root)
    if not hierarchies:
        raise Unavailable(f"no cgroup v2 or v1 (memory, pids, cpu, systemd) hierarchy under {ctx.cgroup_root}: "
                          "pod processes cannot be found")
    return hierarchies


def require_ptrace(ctx: ProbeContext, relpath: str) -> None:
    """:class:`Unavailable` when ``/proc/1/<relpath>`` is refused: reading other processes' ``fd``
    and ``io`` needs ptrace read access (root, or ``CAP_SYS_PTRACE``)."""
    path = os.path.join(ctx.proc_root, "1", relpath)
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except PermissionError:
        raise Unavailable(f"{path}: permission denied (needs root or CAP_SYS_PTRACE)") from None
    except FileNotFoundError:
        pass  # no pid 1 in this proc root (a fixture tree); the per-process reads will tell


def pod_processes(ctx: ProbeContext, hierarchies: list[Hierarchy]) -> PodProcesses:
    """This cycle's pod -> processes, scanned on first use (:meth:`Cycle.pod_processes
    <otel_kubeskoop.probe.Cycle.pod_processes>`); the scan's errors are reported by the probe that
    made it."""
    scan, made = ctx.cycle.pod_processes(hierarchies)
    if made:
        for exc in scan.errors:
            ctx.report(exc)
    return scan
