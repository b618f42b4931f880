# SPDX-License-Identifier: Apache-2.0
"""Which BPF programs processes hold: the fdinfo parser, and the reader over a fake /proc tree
(descriptor links and fdinfo files as the kernel shows them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.procfs.pid_fdinfo import parse_fdinfo_prog_id, read_held_programs

# /proc/<pid>/fdinfo/<fd> of a BPF program and of a BPF link, as Linux 6.18 prints them.
PROG = (b"pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2071\nprog_type:\t3\nprog_jited:\t1\n"
        b"prog_tag:\t7c85c77581178cdb\nmemlock:\t4096\nprog_id:\t5675\nrun_time_ns:\t0\n"
        b"run_cnt:\t0\nrecursion_misses:\t0\nverified_insns:\t2\n")
LINK = b"pos:\t0\nflags:\t02000000\nmnt_id:\t16\nino:\t2071\nlink_type:\ttracepoint\nlink_id:\t9\nprog_tag:\tab\nprog_id:\t77\n"


@pytest.mark.parametrize("data, expected", [
    (PROG, 5675), (LINK, 77), (b"pos:\t0\nflags:\t02\n", None), (b"", None),
])
def test_parse(data: bytes, expected: int | None) -> None:
    assert parse_fdinfo_prog_id(data, "/proc/1/fdinfo/3") == expected


def test_parse_refuses_a_prog_id_that_is_not_a_number() -> None:
    with pytest.raises(ParseError, match=r"/proc/1/fdinfo/3: prog_id b'x1' is not a number"):
        parse_fdinfo_prog_id(b"prog_id:\tx1\n", "/proc/1/fdinfo/3")


def test_read_over_a_fake_proc(tmp_path: Path) -> None:
    def fd(pid: int, n: int, target: str, info: bytes) -> None:
        (tmp_path / str(pid) / "fd").mkdir(parents=True, exist_ok=True)
        (tmp_path / str(pid) / "fdinfo").mkdir(exist_ok=True)
        os.symlink(target, tmp_path / str(pid) / "fd" / str(n))
        (tmp_path / str(pid) / "fdinfo" / str(n)).write_bytes(info)

    fd(10, 3, "anon_inode:bpf-prog", PROG)
    fd(10, 4, "socket:[1234]", b"pos:\t0\nflags:\t02\n")
    fd(10, 5, "anon_inode:bpf_link", LINK)
    fd(20, 7, "anon_inode:bpf-prog", PROG)
    fd(30, 3, "anon_inode:bpf-map", b"pos:\t0\nmap_type:\t1\nmap_id:\t4\n")
    (tmp_path / "40").mkdir()  # a zombie: no fd directory
    (tmp_path / "self").mkdir()  # not a pid
    got = read_held_programs(str(tmp_path))
    assert got.holders == {5675: (10, 20), 77: (10,)}
    assert got.unreadable == ()
