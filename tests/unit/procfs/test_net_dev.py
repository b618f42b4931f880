# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.net_dev against the fake /proc tree in tests/fixtures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_dev import NetDevStats, parse_net_dev, read_net_dev

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "net"

HEADER = (
    b"Inter-|   Receive                                                |  Transmit\n"
    b" face |bytes    packets errs drop fifo frame compressed multicast"
    b"|bytes    packets errs drop fifo colls carrier compressed\n"
)


def _stats(*values: int) -> NetDevStats:
    return NetDevStats(*values)


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (
            "4242/net/dev",
            {
                "lo": _stats(10452, 131, 0, 0, 0, 0, 0, 0, 10452, 131, 0, 0, 0, 0, 0, 0),
                "eth0": _stats(52341234, 48213, 0, 7, 0, 0, 0, 0, 9876543, 45102, 0, 1, 0, 0, 0, 0),
            },
        ),
        (
            "4343/net/dev",
            {
                "lo": _stats(*[0] * 16),
                "eth0": _stats(
                    98765432101, 81234567, 3, 12, 0, 0, 0, 0, 12345678901, 9876543, 0, 0, 0, 0, 0, 0
                ),
                "net1": _stats(4096, 32, 0, 0, 0, 0, 0, 6, 2048, 16, 0, 0, 0, 0, 0, 0),
            },
        ),
    ],
)
def test_parse_pod_fixtures(relpath: str, expected: dict[str, NetDevStats]) -> None:
    got = parse_net_dev((PROC / relpath).read_bytes(), relpath)
    assert got == expected
    assert list(got) == list(expected)


def test_parse_host_capture() -> None:
    got = parse_net_dev((PROC / "net" / "dev").read_bytes())
    assert list(got) == ["lo", "ifb0", "ifb1", "eth0"]
    assert got["lo"] == _stats(3193, 29, 0, 0, 0, 0, 0, 0, 3193, 29, 0, 0, 0, 0, 0, 0)
    assert got["eth0"].rx_bytes == 57557320
    assert got["eth0"].rx_packets == 1885
    assert got["eth0"].tx_bytes == 143335
    assert got["eth0"].tx_packets == 1176
    assert all(isinstance(v, NetDevStats) for v in got.values())


def test_host_and_init_pid_copies_match() -> None:
    assert (PROC / "net" / "dev").read_bytes() == (PROC / "1" / "net" / "dev").read_bytes()


def test_field_order_matches_kernel_header() -> None:
    header = (PROC / "net" / "dev").read_bytes().splitlines()[1].decode()
    _, rx, tx = header.split("|")
    names = ["rx_" + n for n in rx.split()] + ["tx_" + n for n in tx.split()]
    assert names == [f.name for f in dataclasses.fields(NetDevStats)]


def test_counter_abutting_colon_and_blank_trailing_line() -> None:
    data = HEADER + b"  eth0:123456789012 5 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n\n"
    got = parse_net_dev(data)
    assert got == {"eth0": _stats(123456789012, 5, 0, 0, 0, 0, 0, 0, 7, 8, 0, 0, 0, 0, 0, 0)}


def test_header_only_is_empty() -> None:
    assert parse_net_dev(HEADER) == {}


def test_frozen() -> None:
    stats = _stats(*range(16))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rx_bytes = 1  # type: ignore[misc]


def test_read_through_procdir() -> None:
    got = read_net_dev(ProcDir(str(PROC / "4242")))
    assert list(got) == ["lo", "eth0"]
    assert got["eth0"].rx_drop == 7
    assert got["eth0"].tx_drop == 1


def test_missing_file_passes_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_net_dev(ProcDir(str(tmp_path)))


def test_read_error_names_source_path(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "dev").write_bytes(b"garbage\n")
    with pytest.raises(ParseError) as exc:
        read_net_dev(ProcDir(str(tmp_path)))
    assert str(tmp_path / "net" / "dev") in str(exc.value)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("dev_truncated_line", 4),
        ("dev_extra_column", 4),
        ("dev_non_numeric", 4),
        ("dev_missing_colon", 4),
        ("dev_no_header", None),
        ("empty", None),
    ],
)
def test_malformed(name: str, line: int | None) -> None:
    path = MALFORMED / name
    with pytest.raises(ParseError) as exc:
        parse_net_dev(path.read_bytes(), str(path))
    assert exc.value.path == str(path)
    assert exc.value.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc.value).startswith(where)
