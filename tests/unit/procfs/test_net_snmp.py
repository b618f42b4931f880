# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.net_snmp (net/snmp and net/netstat) against tests/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_snmp import (
    parse_net_netstat,
    parse_net_snmp,
    read_net_netstat,
    read_net_snmp,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "net"


def test_parse_host_snmp_capture() -> None:
    got = parse_net_snmp((PROC / "net" / "snmp").read_bytes())
    assert list(got) == ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]
    assert {k: len(v) for k, v in got.items()} == {
        "Ip": 20, "Icmp": 29, "IcmpMsg": 1, "Tcp": 15, "Udp": 9, "UdpLite": 9,
    }
    assert got["Ip"]["InReceives"] == 1911
    assert got["Ip"]["OutTransmits"] == 1194
    assert got["IcmpMsg"] == {"InType3": 1}
    assert got["Tcp"] == {
        "RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1, "ActiveOpens": 31,
        "PassiveOpens": 2, "AttemptFails": 0, "EstabResets": 0, "CurrEstab": 0, "InSegs": 1849,
        "OutSegs": 1133, "RetransSegs": 0, "InErrs": 0, "OutRsts": 40, "InCsumErrors": 0,
    }
    assert got["Udp"]["OutDatagrams"] == 62


def test_parse_host_netstat_capture() -> None:
    got = parse_net_netstat((PROC / "net" / "netstat").read_bytes())
    assert list(got) == ["TcpExt", "IpExt", "MPTcpExt"]
    assert {k: len(v) for k, v in got.items()} == {"TcpExt": 135, "IpExt": 18, "MPTcpExt": 76}
    assert got["TcpExt"]["TW"] == 10
    assert got["TcpExt"]["TCPPureAcks"] == 34
    assert got["IpExt"]["InOctets"] == 57533939
    assert got["IpExt"]["OutOctets"] == 129208


@pytest.mark.parametrize(
    ("relpath", "group", "expected_subset"),
    [
        ("4242/net/snmp", "Ip", {"Forwarding": 1, "InReceives": 48213, "InDiscards": 3,
                                 "InDelivers": 48190, "OutRequests": 45102, "OutNoRoutes": 2}),
        ("4242/net/snmp", "Tcp", {"MaxConn": -1, "ActiveOpens": 1523, "PassiveOpens": 842,
                                  "AttemptFails": 17, "EstabResets": 9, "CurrEstab": 14,
                                  "InSegs": 40211, "OutSegs": 39877, "RetransSegs": 128,
                                  "InErrs": 2, "OutRsts": 61, "InCsumErrors": 0}),
        ("4242/net/snmp", "Udp", {"InDatagrams": 7890, "NoPorts": 5, "InErrors": 1,
                                  "OutDatagrams": 7902, "RcvbufErrors": 1, "SndbufErrors": 0}),
        ("4242/net/snmp", "IcmpMsg", {"InType3": 10, "InType8": 2, "OutType0": 2, "OutType3": 5}),
        ("4242/net/netstat", "TcpExt", {"TW": 311, "DelayedACKs": 2102, "ListenOverflows": 4,
                                        "ListenDrops": 4, "TCPLostRetransmit": 3,
                                        "TCPFastRetrans": 40, "TCPTimeouts": 37,
                                        "TCPAbortOnData": 6, "TCPAbortOnClose": 2,
                                        "TCPSynRetrans": 11, "TCPOrigDataSent": 30112,
                                        "TCPBacklogDrop": 0}),
        ("4242/net/netstat", "IpExt", {"InOctets": 52341234, "OutOctets": 9876543,
                                       "InNoECTPkts": 48213}),
        ("4343/net/snmp", "Ip", {"Forwarding": 2, "InReceives": 81234567, "InHdrErrors": 1,
                                 "InDelivers": 81234500, "OutRequests": 9876543}),
        ("4343/net/snmp", "Tcp", {"MaxConn": -1, "ActiveOpens": 20, "PassiveOpens": 99871,
                                  "EstabResets": 410, "CurrEstab": 230, "InSegs": 81000000,
                                  "OutSegs": 9800000, "RetransSegs": 5021, "OutRsts": 733}),
        ("4343/net/netstat", "TcpExt", {"TW": 9120, "ListenOverflows": 1200, "ListenDrops": 1203,
                                        "TCPTimeouts": 812, "TCPAbortOnData": 44,
                                        "TCPBacklogDrop": 17}),
        ("4343/net/netstat", "IpExt", {"InOctets": 98765432101, "OutOctets": 12345678901}),
    ],
)
def test_parse_pod_fixtures(relpath: str, group: str, expected_subset: dict[str, int]) -> None:
    got = parse_net_snmp((PROC / relpath).read_bytes(), relpath)
    assert {k: got[group][k] for k in expected_subset} == expected_subset


def test_icmpmsg_absent_when_no_icmp_seen() -> None:
    got = parse_net_snmp((PROC / "4343" / "net" / "snmp").read_bytes())
    assert list(got) == ["Ip", "Icmp", "Tcp", "Udp", "UdpLite"]


def test_pod_fixtures_differ() -> None:
    a = parse_net_snmp((PROC / "4242" / "net" / "snmp").read_bytes())
    b = parse_net_snmp((PROC / "4343" / "net" / "snmp").read_bytes())
    assert a["Tcp"] != b["Tcp"]


def test_repeated_group_pairs_are_merged() -> None:
    # The kernel splits IcmpMsg into several line pairs once many ICMP types have been seen.
    data = (
        b"Ip: Forwarding\nIp: 1\n"
        b"IcmpMsg: InType0 InType3\nIcmpMsg: 4 5\n"
        b"IcmpMsg: OutType0 OutType8\nIcmpMsg: 6 7\n"
    )
    assert parse_net_snmp(data) == {
        "Ip": {"Forwarding": 1},
        "IcmpMsg": {"InType0": 4, "InType3": 5, "OutType0": 6, "OutType8": 7},
    }


def test_unknown_groups_and_keys_are_kept() -> None:
    data = b"Tcp: MaxConn NewCounter\nTcp: -1 9\nFutureExt: A B\nFutureExt: 1 2\n"
    assert parse_net_snmp(data) == {
        "Tcp": {"MaxConn": -1, "NewCounter": 9},
        "FutureExt": {"A": 1, "B": 2},
    }


def test_read_through_procdir() -> None:
    source = ProcDir(str(PROC / "4242"))
    snmp = read_net_snmp(source)
    netstat = read_net_netstat(source)
    assert snmp["Tcp"]["RetransSegs"] == 128
    assert netstat["TcpExt"]["ListenDrops"] == 4
    assert "TcpExt" not in snmp
    assert "Tcp" not in netstat


@pytest.mark.parametrize("reader", [read_net_snmp, read_net_netstat])
def test_missing_file_passes_through(tmp_path: Path, reader) -> None:
    with pytest.raises(FileNotFoundError):
        reader(ProcDir(str(tmp_path)))


def test_default_paths_in_messages() -> None:
    with pytest.raises(ParseError, match=r"^net/snmp: "):
        parse_net_snmp(b"")
    with pytest.raises(ParseError, match=r"^net/netstat: "):
        parse_net_netstat(b"")


@pytest.mark.parametrize("parser", [parse_net_snmp, parse_net_netstat])
@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("snmp_count_mismatch", 4),
        ("snmp_missing_values_line", 3),
        ("snmp_non_integer", 4),
        ("snmp_prefix_mismatch", 4),
        ("snmp_no_colon", 3),
        ("empty", None),
    ],
)
def test_malformed(parser, name: str, line: int | None) -> None:
    path = MALFORMED / name
    with pytest.raises(ParseError) as exc:
        parser(path.read_bytes(), str(path))
    assert exc.value.path == str(path)
    assert exc.value.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc.value).startswith(where)
