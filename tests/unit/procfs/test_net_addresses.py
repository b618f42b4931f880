# SPDX-License-Identifier: Apache-2.0
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError, ProcDir
from otel_kubeskoop.procfs.net_addresses import parse_fib_trie_local, parse_if_inet6, read_addresses

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "proc_addresses"


def test_local_table_host_addresses_without_loopback_and_link_local():
    # 192.0.2.2 is in both tables; 127.0.0.1 is loopback; the Main table's entries do not count.
    assert read_addresses(ProcDir(str(FIXTURE))) == {"192.0.2.2", "10.244.1.1", "fd00::2", "2001:db8::a01"}


def test_main_table_leaves_are_not_addresses():
    assert parse_fib_trie_local(b"Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.0.2.7\n        /32 host LOCAL\n") == set()


def test_ipv6_off_means_ipv4_only(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "fib_trie").write_bytes((FIXTURE / "net" / "fib_trie").read_bytes())
    assert read_addresses(ProcDir(str(tmp_path))) == {"192.0.2.2", "10.244.1.1"}


@pytest.mark.parametrize("line,message", [
    (b"fd00 04 40 00 82 eth0\n", "32 hex digits"),
    (b"zz000000000000000000000000000002 04 40 00 82 eth0\n", "not hex"),
])
def test_malformed_if_inet6(line, message):
    with pytest.raises(ParseError, match=message) as exc:
        parse_if_inet6(line, "net/if_inet6")
    assert exc.value.line == 1


def test_malformed_fib_trie_leaf():
    with pytest.raises(ParseError, match="not an IPv4 address"):
        parse_fib_trie_local(b"Local:\n  |-- 192.0.2\n     /32 host LOCAL\n", "net/fib_trie")
