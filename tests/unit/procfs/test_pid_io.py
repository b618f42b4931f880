# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.pid_io (/proc/<pid>/io)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.pid_io import PidIO, parse_pid_io, read_pid_io

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "pods" / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "pid"


def test_read_fixture() -> None:
    assert read_pid_io(ProcDir(str(PROC / "5001"))) == PidIO(
        rchar=9437184, wchar=524288, syscr=2310, syscw=128, read_bytes=4096000, write_bytes=1048576,
        cancelled_write_bytes=8192)


def test_own_process_parses() -> None:
    got = read_pid_io(ProcDir(f"/proc/{os.getpid()}"))
    assert got.syscr > 0 and got.rchar > 0


def test_unknown_keys_and_blank_lines_are_ignored() -> None:
    data = (PROC / "5002" / "io").read_bytes() + b"\nfuture_counter: 7\n"
    assert parse_pid_io(data).syscw == 12


@pytest.mark.parametrize("name, message", [
    ("io_missing_key", "missing cancelled_write_bytes"),
    ("io_non_numeric", "non-numeric value"),
    ("io_no_colon", "expected 'key: value'"),
])
def test_malformed(name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_pid_io((MALFORMED / name).read_bytes(), f"/proc/1/{name}")
    assert err.value.path == f"/proc/1/{name}"


def test_missing_file_passes_through(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_pid_io(ProcDir(str(tmp_path)))
