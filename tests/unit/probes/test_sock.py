# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import sock
from tests.unit.probes.conftest import POD_A


def test_tcp_sockets_per_namespace_inuse_counts_ipv6(proc):
    got, _ = proc.run(sock.SPEC)
    # 4242: "TCP: inuse 5 orphan 0 tw 2 alloc 8 mem 1" and "TCP6: inuse 3"
    assert got[("kubeskoop.sock.inuse", POD_A, ())] == 8
    assert got[("kubeskoop.sock.tw", POD_A, ())] == 2
    assert got[("kubeskoop.sock.alloc", POD_A, ())] == 8
    assert got[("kubeskoop.sock.mem", POD_A, ())] == 1
    assert got[("kubeskoop.sock.orphan", POD_A, ())] == 0


def test_without_sockstat6_inuse_is_ipv4_only(proc_copy):
    proc_copy.remove(4242, "net/sockstat6")
    got, ctx = proc_copy.run(sock.SPEC)
    assert got[("kubeskoop.sock.inuse", POD_A, ())] == 5 and ctx.errors == []
