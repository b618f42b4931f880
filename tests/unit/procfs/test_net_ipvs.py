# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.net_ipvs (net/ip_vs_stats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_ipvs import IPVSStats, parse_ip_vs_stats, read_ip_vs_stats

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "net"

EXPECTED = IPVSStats(
    connections=0x1A2B,
    incoming_packets=0x3C4D5,
    outgoing_packets=0x2B3C4,
    incoming_bytes=0x1F2E3D4C,
    outgoing_bytes=0xA1B2C3D4E,
)


def test_parse_fixture() -> None:
    got = parse_ip_vs_stats((PROC / "net" / "ip_vs_stats").read_bytes())
    assert got == EXPECTED
    # Upstream KubeSkoop filled incoming packets with incoming bytes; guard the column mapping.
    assert got.incoming_packets != got.incoming_bytes


def test_wide_counters_and_rate_section_ignored() -> None:
    data = (
        b"   Total Incoming Outgoing         Incoming         Outgoing\n"
        b"   Conns  Packets  Packets            Bytes            Bytes\n"
        b"1FFFFFFFF        1        2 FFFFFFFFFFFFFFFF                0\n"
        b"\n"
        b" Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n"
        b"garbage that is not parsed\n"
    )
    assert parse_ip_vs_stats(data) == IPVSStats(0x1FFFFFFFF, 1, 2, 0xFFFFFFFFFFFFFFFF, 0)


def test_read_through_procdir() -> None:
    assert read_ip_vs_stats(ProcDir(str(PROC))) == EXPECTED


def test_missing_file_passes_through() -> None:
    # No IPVS in the pod's fixture netns, as on a node without the ip_vs module.
    with pytest.raises(FileNotFoundError):
        read_ip_vs_stats(ProcDir(str(PROC / "4242")))


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("ip_vs_stats_truncated", 3),
        ("ip_vs_stats_non_hex", 3),
        ("ip_vs_stats_no_totals", None),
        ("empty", None),
    ],
)
def test_malformed(name: str, line: int | None) -> None:
    path = MALFORMED / name
    with pytest.raises(ParseError) as exc:
        parse_ip_vs_stats(path.read_bytes(), str(path))
    assert exc.value.path == str(path)
    assert exc.value.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc.value).startswith(where)
