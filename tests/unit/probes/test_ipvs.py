# SPDX-License-Identifier: Apache-2.0
import pytest

from otel_kubeskoop.probe import Unavailable
from otel_kubeskoop.probes import ipvs


def test_totals_map_to_the_right_columns(proc):
    got, _ = proc.run(ipvs.SPEC)
    # tests/fixtures/proc/1/net/ip_vs_stats: "1A2B 3C4D5 2B3C4 1F2E3D4C A1B2C3D4E"
    assert got == {
        ("kubeskoop.ipvs.connections", None, ()): 0x1A2B,
        ("kubeskoop.ipvs.incomingpackets", None, ()): 0x3C4D5,  # packets, not bytes (upstream's bug)
        ("kubeskoop.ipvs.outgoingpackets", None, ()): 0x2B3C4,
        ("kubeskoop.ipvs.incomingbytes", None, ()): 0x1F2E3D4C,
        ("kubeskoop.ipvs.outgoingbytes", None, ()): 0xA1B2C3D4E,
    }


def test_unavailable_without_ipvs(proc_copy):
    proc_copy.remove(1, "net/ip_vs_stats")
    ctx = proc_copy.context("ipvs")
    with pytest.raises(Unavailable, match="ip_vs_stats does not exist: the kernel has no IPVS"):
        ipvs.SPEC.factory(ipvs.SPEC.args(), ctx).start()
