# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import netdev
from otel_kubeskoop.procfs import ParseError
from tests.unit.probes.conftest import HOST, POD_A, POD_B

IF = "network.interface.name"
DIR = "network.io.direction"


def test_per_interface_counters_per_namespace(proc):
    got, ctx = proc.run(netdev.SPEC)
    assert got[("kubeskoop.netdev.rxbytes", POD_A, ((IF, "eth0"),))] == 52341234
    assert got[("kubeskoop.netdev.txbytes", POD_A, ((IF, "eth0"),))] == 9876543
    assert got[("kubeskoop.netdev.rxdropped", POD_A, ((IF, "eth0"),))] == 7
    assert got[("kubeskoop.netdev.txdropped", POD_A, ((IF, "eth0"),))] == 1
    assert got[("kubeskoop.netdev.rxpackets", POD_A, ((IF, "lo"),))] == 131
    assert {k[1] for k in got} == {HOST, POD_A, POD_B}
    assert ctx.errors == []


def test_standard_pod_and_node_metrics_skip_lo(proc):
    got, _ = proc.run(netdev.SPEC)
    assert got[("k8s.pod.network.io", POD_A, ((IF, "eth0"), (DIR, "receive")))] == 52341234
    assert got[("k8s.pod.network.io", POD_A, ((IF, "eth0"), (DIR, "transmit")))] == 9876543
    assert not [k for k in got if k[0].startswith("k8s.") and (IF, "lo") in k[2]]
    assert not [k for k in got if k[0].startswith("k8s.pod.") and k[1] == HOST]
    assert [k for k in got if k[0] == "k8s.node.network.io" and k[1] == HOST]
    assert not [k for k in got if k[0].startswith("k8s.node.") and k[1] != HOST]


def test_malformed_file_in_one_namespace_leaves_the_others(proc_copy):
    proc_copy.break_file(4343, "net/dev", "dev_extra_column")
    got, ctx = proc_copy.run(netdev.SPEC)
    assert {k[1] for k in got} == {HOST, POD_A}
    (err,) = ctx.errors
    assert isinstance(err, ParseError) and err.path.endswith("4343/net/dev")
