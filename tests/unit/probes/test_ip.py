# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import ip
from otel_kubeskoop.vocabulary.instruments import InstrumentKind
from tests.unit.probes.conftest import PROC, POD_A, snmp_section


def test_ip_mib_per_namespace(proc):
    got, _ = proc.run(ip.SPEC)
    want = snmp_section(PROC / "4242/net/snmp", "Ip")
    for inst in ip.SPEC.instruments:
        assert got[(inst.name, POD_A, ())] == want[inst.key]
    kinds = {i.key: i.kind for i in ip.SPEC.instruments}
    assert kinds["Forwarding"] is InstrumentKind.GAUGE and kinds["InReceives"] is InstrumentKind.COUNTER
