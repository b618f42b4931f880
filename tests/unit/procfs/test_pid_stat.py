# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.pid_stat (/proc/<pid>/stat)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.pid_stat import PidStat, parse_pid_stat, read_pid_stat

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "pods" / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "pid"


def test_comm_with_spaces_and_parentheses() -> None:
    # 5001's comm is "python3 (srv)": the split is at the last ')'.
    assert read_pid_stat(ProcDir(str(PROC / "5001"))) == PidStat(
        pid=5001, comm="python3 (srv)", state="S", ppid=4995, num_threads=3, starttime=881350)


def test_own_process() -> None:
    me = read_pid_stat(ProcDir(f"/proc/{os.getpid()}"))
    assert me.pid == os.getpid() and me.ppid == os.getppid() and me.starttime > 0


def test_field_positions() -> None:
    fields = [str(n) for n in range(4, 53)]  # field n holds the number n from field 4 on
    stat = parse_pid_stat(f"77 (a) b) R {' '.join(fields)}".encode())
    got = (stat.pid, stat.comm, stat.state, stat.ppid, stat.num_threads, stat.starttime)
    assert got == (77, "a) b", "R", 4, 20, 22)


@pytest.mark.parametrize("name, message", [
    ("stat_truncated", "expected at least 22 fields"),
    ("stat_no_comm", r"no '\(comm\)' field"),
])
def test_malformed(name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_pid_stat((MALFORMED / name).read_bytes(), name)
