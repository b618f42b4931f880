# SPDX-License-Identifier: Apache-2.0
"""Which processes belong to which pod, from the cgroup filesystem (cgroup v1 and v2).

No OpenTelemetry and no Kubernetes imports.

Process-level probes (``fd``, ``io``) need every process of every pod, hostNetwork pods included
(they share the host's network namespace, so namespaces cannot tell them apart). The kubelet puts
each pod in its own cgroup (``topology/cgroup.py`` documents the shapes), so the pod's processes
are the ``cgroup.procs`` of its cgroup directory and of every directory below it (one per
container, the sandbox's included).

Why ``cgroup.procs`` and not a scan of every ``/proc/<pid>/cgroup``:

- ``cgroup.procs`` lists thread-group IDs, one per process (cgroups(7); in v1 the list may repeat
  an ID, so it is de-duplicated). Threads share their process's descriptor table and
  ``/proc/<tgid>/io`` already sums the threads, so counting per TGID is exact; upstream read v1
  ``tasks`` (thread IDs) and counted every thread's shared table and I/O again.
- The cost scales with the pods' cgroup directories and processes, not with every process on the
  node: one directory walk plus one small read per pod cgroup directory (measured in
  ``bench/pod_scope_cost.py``).
- It works for v2 and for v1 alike; upstream used the v1 memory hierarchy only, so ``fd`` and
  ``io`` were empty on cgroup v2 nodes.

Hierarchies: on a v2 host the root itself (it has ``cgroup.controllers``); on a hybrid host the
unified hierarchy (``<root>/unified``) *and* one v1 hierarchy, because where pod processes show up
depends on the cgroup driver and runtime (runc's v1 manager may leave the unified path at the
runtime's service); on a v1 host one v1 hierarchy. Among v1 hierarchies ``memory`` is preferred
(the one upstream used; the kubelet always creates pod cgroups there), then ``pids``, ``cpu``,
``cpu,cpuacct``, ``systemd`` (``name=systemd``). A process found in both hierarchies belongs to the
pod the unified one names, as in :func:`~otel_kubeskoop.topology.cgroup.parse_proc_cgroup`.

The walk sees the tree as mounted at ``cgroup_root``: an agent in a container needs the host's
cgroup filesystem there (a hostPath mount), and pids are those of the reader's pid namespace (the
agent runs with ``hostPID``). See https://man7.org/linux/man-pages/man7/cgroups.7.html and
https://docs.kernel.org/admin-guide/cgroup-v2.html (``cgroup.procs``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.topology.cgroup import parse_cgroup_path

__all__ = [
    "PROCS_FILE",
    "Hierarchy",
    "PodProcesses",
    "find_hierarchies",
    "parse_cgroup_procs",
    "read_cgroup_procs",
    "scan_pod_processes",
    "walk_pod_cgroups",
]

PROCS_FILE = "cgroup.procs"
V1_PREFERENCE = ("memory", "pids", "cpu", "cpu,cpuacct", "systemd")


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy: its mount point and cgroup version."""

    path: str
    version: int


@dataclass(slots=True)
class PodProcesses:
    """The result of one scan: pod UID -> its processes (TGIDs, sorted), and what went wrong.

    ``errors`` holds the cgroup directories that could not be read (other than vanishing), so the
    caller can report them without the scan stopping.
    """

    pods: dict[str, tuple[int, ...]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    cgroups: int = 0  # pod cgroup directories read


def parse_cgroup_procs(data: bytes, path: str = PROCS_FILE) -> list[int]:
    """Parse a ``cgroup.procs`` file (one decimal ID per line) into its IDs, in file order.

    An empty file is an empty cgroup. ID 0 (a process outside the reader's pid namespace) is
    dropped. Raises :class:`ParseError` naming ``path`` and the 1-based line for a non-numeric line.
    """
    out = []
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line:
            continue
        try:
            pid = int(line)
        except ValueError:
            raise ParseError(path, f"not a process ID: {line[:40]!r}", lineno) from None
        if pid > 0:
            out.append(pid)
    return out


def read_cgroup_procs(cgroup_dir: str) -> list[int]:
    """Read and parse ``cgroup.procs`` of one cgroup directory.

    See https://docs.kernel.org/admin-guide/cgroup-v2.html (``cgroup.procs``).
    ``FileNotFoundError`` (the cgroup was removed) passes through unwrapped.
    """
    source = ProcDir(cgroup_dir)
    return parse_cgroup_procs(source.read(PROCS_FILE), source.path(PROCS_FILE))


def find_hierarchies(cgroup_root: str) -> list[Hierarchy]:
    """The hierarchies to scan under ``cgroup_root`` (see the module docstring); empty if none."""
    if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        return [Hierarchy(cgroup_root, 2)]
    out = []
    unified = os.path.join(cgroup_root, "unified")
    if os.path.exists(os.path.join(unified, "cgroup.controllers")):
        out.append(Hierarchy(unified, 2))
    for name in V1_PREFERENCE:
        path = os.path.join(cgroup_root, name)
        if os.path.exists(os.path.join(path, PROCS_FILE)):
            out.append(Hierarchy(os.path.realpath(path), 1))
            break
    return out


def walk_pod_cgroups(hierarchy: Hierarchy) -> Iterator[tuple[str, str]]:
    """Every cgroup directory that belongs to a pod, as ``(pod uid, absolute path)``.

    The pod's own directory and everything below it (containers, a crun ``container`` leaf) are
    yielded; the path relative to the mount point is what ``/proc/<pid>/cgroup`` would show, and
    :func:`~otel_kubeskoop.topology.cgroup.parse_cgroup_path` decides the pod (the innermost one
    for a cluster nested in a pod). Directories removed during the walk are skipped.
    """
    # (path relative to the mount, absolute path, link count, pod UID of the parent directory)
    stack: list[tuple[str, str, int, str | None]] = [("", hierarchy.path, 0, None)]
    while stack:
        rel, path, nlink, uid = stack.pop()
        if "pod" in rel[rel.rfind("/"):]:
            # Only a directory whose own name says "pod" can start a (nested) pod; the others
            # belong to their parent's pod (container IDs and scope names never contain it).
            pod = parse_cgroup_path(rel)
            uid = pod.pod_uid if pod is not None else uid
        if uid is not None:
            yield uid, path
        # kernfs (and ext4) count a directory's links as 2 + its subdirectories: a leaf (every
        # container's cgroup) needs no listing of its dozens of control files. 1 means "not
        # counted" (btrfs, overlayfs), so the directory is listed.
        if nlink == 2:
            continue
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((f"{rel}/{entry.name}", entry.path,
                                      entry.stat(follow_symlinks=False).st_nlink, uid))
                except OSError:
                    continue  # removed meanwhile


def scan_pod_processes(hierarchies: list[Hierarchy]) -> PodProcesses:
    """Pod UID -> TGIDs over ``hierarchies`` (earlier ones win when two name different pods)."""
    result = PodProcesses()
    owner: dict[int, str] = {}
    found: dict[str, set[int]] = {}
    for hierarchy in hierarchies:
        for uid, path in walk_pod_cgroups(hierarchy):
            result.cgroups += 1
            pids = found.setdefault(uid, set())
            try:
                procs = read_cgroup_procs(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # the cgroup went away during the scan
            except (OSError, ParseError) as exc:
                result.errors.append(exc)
                continue
            for pid in procs:
                if owner.setdefault(pid, uid) == uid:
                    pids.add(pid)
    result.pods = {uid: tuple(sorted(pids)) for uid, pids in found.items()}
    return result
