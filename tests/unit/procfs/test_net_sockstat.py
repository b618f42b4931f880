# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.net_sockstat (net/sockstat and net/sockstat6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_sockstat import parse_sockstat, read_sockstat, read_sockstat6

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROC = FIXTURES / "proc"
MALFORMED = FIXTURES / "proc_malformed" / "net"


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (
            "net/sockstat",
            {
                "sockets": {"used": 12},
                "TCP": {"inuse": 1, "orphan": 0, "tw": 0, "alloc": 1, "mem": 387},
                "UDP": {"inuse": 0, "mem": 0},
                "UDPLITE": {"inuse": 0},
                "RAW": {"inuse": 0},
                "FRAG": {"inuse": 0, "memory": 0},
            },
        ),
        (
            "net/sockstat6",
            {
                "TCP6": {"inuse": 0},
                "UDP6": {"inuse": 0},
                "UDPLITE6": {"inuse": 0},
                "RAW6": {"inuse": 0},
                "FRAG6": {"inuse": 0, "memory": 0},
            },
        ),
        (
            "4242/net/sockstat",
            {
                "sockets": {"used": 290},
                "TCP": {"inuse": 5, "orphan": 0, "tw": 2, "alloc": 8, "mem": 1},
                "UDP": {"inuse": 3, "mem": 2},
                "UDPLITE": {"inuse": 0},
                "RAW": {"inuse": 0},
                "FRAG": {"inuse": 0, "memory": 0},
            },
        ),
        (
            "4242/net/sockstat6",
            {
                "TCP6": {"inuse": 3},
                "UDP6": {"inuse": 1},
                "UDPLITE6": {"inuse": 0},
                "RAW6": {"inuse": 0},
                "FRAG6": {"inuse": 0, "memory": 0},
            },
        ),
        (
            "4343/net/sockstat",
            {
                "sockets": {"used": 1041},
                "TCP": {"inuse": 230, "orphan": 2, "tw": 140, "alloc": 245, "mem": 96},
                "UDP": {"inuse": 4, "mem": 3},
                "UDPLITE": {"inuse": 0},
                "RAW": {"inuse": 0},
                "FRAG": {"inuse": 0, "memory": 0},
            },
        ),
    ],
)
def test_parse_fixtures(relpath: str, expected: dict[str, dict[str, int]]) -> None:
    got = parse_sockstat((PROC / relpath).read_bytes(), relpath)
    assert got == expected
    assert list(got) == list(expected)


def test_read_through_procdir() -> None:
    source = ProcDir(str(PROC / "4242"))
    assert read_sockstat(source)["TCP"]["tw"] == 2
    assert read_sockstat6(source)["TCP6"]["inuse"] == 3


@pytest.mark.parametrize("reader", [read_sockstat, read_sockstat6])
def test_missing_file_passes_through(tmp_path: Path, reader) -> None:
    with pytest.raises(FileNotFoundError):
        reader(ProcDir(str(tmp_path)))


def test_default_path_in_message() -> None:
    with pytest.raises(ParseError, match=r"^net/sockstat: "):
        parse_sockstat(b"\n")


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("sockstat_odd_pairs", 2),
        ("sockstat_non_integer", 3),
        ("sockstat_no_colon", 2),
        ("empty", None),
    ],
)
def test_malformed(name: str, line: int | None) -> None:
    path = MALFORMED / name
    with pytest.raises(ParseError) as exc:
        parse_sockstat(path.read_bytes(), str(path))
    assert exc.value.path == str(path)
    assert exc.value.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(exc.value).startswith(where)
