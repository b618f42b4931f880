# SPDX-License-Identifier: Apache-2.0
"""ip: the IP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Ip:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary import instruments as I


class IpProbe(SnmpSectionProbe):
    section = "Ip"
    instruments = I.IP


SPEC = snmp_spec("ip", IpProbe, "IP packets received, delivered, forwarded, discarded and fragmented per network namespace")
