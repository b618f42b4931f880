# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.probes import softnet
from tests.unit.probes.conftest import PROC


def test_node_scope_per_cpu(proc):
    got, _ = proc.run(softnet.SPEC)
    rows = [line.split() for line in (PROC / "1/net/softnet_stat").read_text().splitlines()]
    assert {k[1] for k in got} == {None}, "softnet is node scope: never attributed to a namespace"
    for cpu, cols in enumerate(rows):
        attrs = (("cpu.logical_number", int(cols[12], 16)),)
        assert got[("kubeskoop.softnet.processed", None, attrs)] == int(cols[0], 16)
        assert got[("kubeskoop.softnet.dropped", None, attrs)] == int(cols[1], 16)
        assert got[("kubeskoop.softnet.timesqueeze", None, attrs)] == int(cols[2], 16)
