# SPDX-License-Identifier: Apache-2.0
"""udp: the UDP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Udp:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary import instruments as I


class UdpProbe(SnmpSectionProbe):
    section = "Udp"
    instruments = I.UDP


SPEC = snmp_spec("udp", UdpProbe, "UDP datagrams, closed-port hits and buffer drops per network namespace")
