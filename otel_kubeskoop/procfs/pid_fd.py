# SPDX-License-Identifier: Apache-2.0
"""Open file descriptors of one process, from the ``/proc/<pid>/fd`` directory.

One symbolic link per open descriptor, named by its number, whose target (``proc_fd_link`` /
``d_path`` in the kernel) is a path for files and ``<type>:[<inode>]`` for objects without one:
``socket:[123456]``, ``pipe:[7890]``, ``anon_inode:[eventpoll]``, ``anon_inode:bpf-map``... Threads
of a process share its descriptor table, so one listing per process (thread-group leader) counts
them all.

Listing the directory and reading the links need ptrace read access to the process (root or
``CAP_SYS_PTRACE``). A descriptor closed between the listing and its ``readlink`` is skipped. See
https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

RELPATH = "fd"
SOCKET_PREFIX = "socket:"


@dataclass(frozen=True, slots=True)
class FdCount:
    """Open descriptors of a process, and how many of them are sockets."""

    open: int
    sockets: int


def count_fd_targets(targets: Iterable[str]) -> FdCount:
    """Count descriptors from their link targets (pure)."""
    total = sockets = 0
    for target in targets:
        total += 1
        if target.startswith(SOCKET_PREFIX):
            sockets += 1
    return FdCount(total, sockets)


def read_fd_targets(pid_dir: str) -> list[str]:
    """Link targets of every open descriptor under ``pid_dir`` (a ``/proc/<pid>`` directory).

    One ``open`` of the ``fd`` directory, one listing, one ``readlink`` per descriptor relative to
    the directory's fd. ``FileNotFoundError`` (the process exited) and ``PermissionError`` (no
    ptrace access) pass through unwrapped.
    """
    dirfd = os.open(os.path.join(pid_dir, RELPATH), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        targets = []
        for name in os.listdir(dirfd):
            try:
                targets.append(os.readlink(name, dir_fd=dirfd))
            except FileNotFoundError:
                continue  # closed since the listing
        return targets
    finally:
        os.close(dirfd)


def read_pid_fd(pid_dir: str) -> FdCount:
    """Count the open descriptors and sockets of the process at ``pid_dir``.

    See https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html.
    """
    return count_fd_targets(read_fd_targets(pid_dir))
