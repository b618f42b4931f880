# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import tcpext
from tests.unit.probes.conftest import PROC, POD_A, POD_B, snmp_section


def test_all_32_upstream_keys_per_namespace(proc):
    got, _ = proc.run(tcpext.SPEC)
    assert len(tcpext.SPEC.instruments) == 32
    for pid, inode in ((4242, POD_A), (4343, POD_B)):
        want = snmp_section(PROC / f"{pid}/net/netstat", "TcpExt")
        for inst in tcpext.SPEC.instruments:
            assert got[(inst.name, inode, ())] == want[inst.key], inst.name


def test_missing_netstat_in_one_namespace_is_no_data_not_an_error(proc_copy):
    proc_copy.remove(4343, "net/netstat")
    got, ctx = proc_copy.run(tcpext.SPEC)
    assert POD_B not in {k[1] for k in got} and POD_A in {k[1] for k in got}
    assert ctx.errors == []
