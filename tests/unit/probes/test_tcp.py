# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import tcp, udp
from tests.unit.probes.conftest import PROC, POD_A, POD_B, snmp_section


def test_tcp_mib_per_namespace(proc):
    got, _ = proc.run(tcp.SPEC)
    want = snmp_section(PROC / "4242/net/snmp", "Tcp")
    assert got[("kubeskoop.tcp.activeopens", POD_A, ())] == want["ActiveOpens"]
    assert got[("kubeskoop.tcp.currestab", POD_A, ())] == want["CurrEstab"]
    assert got[("kubeskoop.tcp.outrsts", POD_B, ())] == snmp_section(PROC / "4343/net/snmp", "Tcp")["OutRsts"]
    assert len([k for k in got if k[1] == POD_A]) == len(tcp.SPEC.instruments)


def test_snmp_is_read_once_per_namespace_for_tcp_and_udp(proc):
    ctx = proc.context("tcp")
    probes = [spec.factory(spec.args(), ctx) for spec in (tcp.SPEC, udp.SPEC)]
    for probe in probes:
        probe.start()
    reads = []
    for ns in ctx.cycle.namespaces.values():
        original = ns.read
        ns.read = lambda relpath, _o=original: reads.append(relpath) or _o(relpath)
    assert all(list(probe.collect()) for probe in probes)
    assert reads.count("net/snmp") == len(ctx.cycle.namespaces) == 3


def test_malformed_snmp_is_reported_by_each_probe_without_rereading(proc_copy):
    proc_copy.break_file(4242, "net/snmp", "snmp_count_mismatch")
    ctx = proc_copy.context("tcp")
    got, _ = proc_copy.run(tcp.SPEC, ctx)
    assert POD_A not in {k[1] for k in got} and POD_B in {k[1] for k in got}
    assert [type(e).__name__ for e in ctx.errors] == ["ParseError"]
