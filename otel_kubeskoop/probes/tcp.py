# SPDX-License-Identifier: Apache-2.0
"""tcp: the TCP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Tcp:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary import instruments as I


class TcpProbe(SnmpSectionProbe):
    section = "Tcp"
    instruments = I.TCP


SPEC = snmp_spec("tcp", TcpProbe, "TCP opens, resets, segments and retransmissions per network namespace")
