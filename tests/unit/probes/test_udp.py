# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import udp
from tests.unit.probes.conftest import POD_A, POD_B


def test_udp_mib_per_namespace(proc):
    got, _ = proc.run(udp.SPEC)
    # tests/fixtures/proc/4242/net/snmp: "Udp: 7890 5 1 7902 1 0 0 0 0"
    assert got[("kubeskoop.udp.indatagrams", POD_A, ())] == 7890
    assert got[("kubeskoop.udp.noports", POD_A, ())] == 5
    assert got[("kubeskoop.udp.inerrors", POD_A, ())] == 1
    assert got[("kubeskoop.udp.rcvbuferrors", POD_A, ())] == 1
    assert got[("kubeskoop.udp.noports", POD_B, ())] == 0
    assert got[("kubeskoop.udp.outdatagrams", POD_B, ())] == 233990
