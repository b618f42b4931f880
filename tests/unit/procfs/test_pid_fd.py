# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.pid_fd (/proc/<pid>/fd)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from otel_kubeskoop.procfs.pid_fd import FdCount, count_fd_targets, read_fd_targets, read_pid_fd

PROC = Path(__file__).resolve().parents[2] / "fixtures" / "pods" / "proc"


def test_count_targets() -> None:
    targets = ["/dev/null", "socket:[1]", "pipe:[2]", "socket:[3]", "anon_inode:[eventpoll]", "/tmp/socket:[x]"]
    assert count_fd_targets(targets) == FdCount(open=6, sockets=2)
    assert count_fd_targets([]) == FdCount(0, 0)


def test_fixture_process() -> None:
    assert sorted(read_fd_targets(str(PROC / "5001"))) == sorted(
        ["/dev/null", "pipe:[77012]", "pipe:[77013]", "socket:[88101]", "socket:[88102]",
         "anon_inode:[eventpoll]", "/var/log/app/access.log", "socket:[88103]"])
    assert read_pid_fd(str(PROC / "5001")) == FdCount(open=8, sockets=3)


def test_own_process_counts_a_new_socket() -> None:
    before = read_pid_fd(f"/proc/{os.getpid()}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), open(os.devnull, "rb"):
        during = read_pid_fd(f"/proc/{os.getpid()}")
    # The listing itself holds one descriptor (the fd directory) in both readings.
    assert during == FdCount(before.open + 2, before.sockets + 1)


def test_missing_process_passes_through(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_pid_fd(str(tmp_path / "99999"))
