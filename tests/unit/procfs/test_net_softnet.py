# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.net_softnet (net/softnet_stat)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_softnet import SoftnetStat, parse_softnet_stat, read_softnet_stat

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "net"


def _line(*cols: int) -> bytes:
    return b" ".join(b"%08x" % c for c in cols) + b"\n"


def test_parse_host_capture() -> None:
    data = (PROC / "net" / "softnet_stat").read_bytes()
    # Captured on kernel 6.18: 15 columns per line (input_qlen and process_qlen after the CPU id).
    assert {len(line.split()) for line in data.splitlines()} == {15}
    assert parse_softnet_stat(data) == [
        SoftnetStat(cpu=0, processed=0xC, dropped=0, time_squeeze=0, received_rps=0,
                    flow_limit_count=0, backlog_len=0),
        SoftnetStat(cpu=1, processed=0x76E, dropped=0, time_squeeze=0, received_rps=0,
                    flow_limit_count=0, backlog_len=0),
    ]


def test_column_mapping_15_columns() -> None:
    # processed dropped squeeze 0 0 0 0 0 collision rps flow backlog cpu input_qlen process_qlen
    data = _line(0x1000, 0x21, 0x5, 0, 0, 0, 0, 0, 0, 0x300, 0x7, 0x9, 3, 0x4, 0x5)
    assert parse_softnet_stat(data) == [
        SoftnetStat(cpu=3, processed=0x1000, dropped=0x21, time_squeeze=0x5, received_rps=0x300,
                    flow_limit_count=0x7, backlog_len=0x9),
    ]


def test_13_columns_cpu_index_survives_offline_cpu() -> None:
    # CPU 1 offline: lines are for CPUs 0 and 2, and column 12 says so.
    data = _line(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0)
    data += _line(5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)
    got = parse_softnet_stat(data)
    assert [s.cpu for s in got] == [0, 2]
    assert [s.backlog_len for s in got] == [2, 0]
    assert [s.dropped for s in got] == [0, 1]


def test_11_columns_old_kernel_uses_line_index() -> None:
    data = _line(10, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4) + _line(20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert parse_softnet_stat(data) == [
        SoftnetStat(cpu=0, processed=10, dropped=1, time_squeeze=2, received_rps=3,
                    flow_limit_count=4, backlog_len=0),
        SoftnetStat(cpu=1, processed=20, dropped=0, time_squeeze=0, received_rps=0,
                    flow_limit_count=0, backlog_len=0),
    ]


def test_extra_columns_ignored() -> None:
    data = _line(1, 2, 3, 0, 0, 0, 0, 0, 0, 4, 5, 6, 7, 0, 0, 9, 9)
    assert parse_softnet_stat(data) == [SoftnetStat(7, 1, 2, 3, 4, 5, 6)]


def test_read_through_procdir() -> None:
    got = read_softnet_stat(ProcDir(str(PROC)))
    assert [s.cpu for s in got] == [0, 1]


def test_missing_file_passes_through() -> None:
    # Pod pid dirs in the fixture tree carry only per-netns files; softnet_stat is global.
    with pytest.raises(FileNotFoundError):
        read_softnet_stat(ProcDir(str(PROC / "4242")))


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("softnet_stat_short_line", 2),
        ("softnet_stat_non_hex", 2),
        ("empty", None),
    ],
)
def test_malformed(name: str, line: int | None) -> None:
    path = MALFORMED / name
    with pytest.raises(ParseError) as exc:
        parse_softnet_stat(path.read_bytes(), str(path))
    assert exc.value.path == str(path)
    assert exc.value.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc.value).startswith(where)
