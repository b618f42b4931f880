# SPDX-License-Identifier: Apache-2.0
"""ip: the IP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Ip:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary.instruments import C, G, mib

# /proc/<pid>/net/snmp, "Ip:" section (RFC 4293 IP-MIB).
INSTRUMENTS = mib("ip", [
    ("Forwarding", G, "1", "IP forwarding setting: 1 forwarding, 2 not forwarding"),
    ("DefaultTTL", G, "1", "Default TTL of IP packets sent"),
    ("InReceives", C, "{packet}", "IP packets received from interfaces, including errors"),
    ("InHdrErrors", C, "{packet}", "IP packets discarded for header errors"),
    ("InAddrErrors", C, "{packet}", "IP packets discarded for an invalid destination address"),
    ("ForwDatagrams", C, "{packet}", "IP packets forwarded"),
    ("InUnknownProtos", C, "{packet}", "IP packets discarded for an unknown transport protocol"),
    ("InDiscards", C, "{packet}", "IP packets received without error but discarded (e.g. no buffer)"),
    ("InDelivers", C, "{packet}", "IP packets delivered to transport protocols"),
    ("OutRequests", C, "{packet}", "IP packets handed to IP for sending by local protocols"),
    ("OutDiscards", C, "{packet}", "IP packets to send that were discarded without error"),
    ("OutNoRoutes", C, "{packet}", "IP packets discarded because no route was found"),
    ("ReasmTimeout", G, "s", "Seconds fragments are held while awaiting reassembly"),
    ("ReasmReqds", C, "{fragment}", "IP fragments received that needed reassembly"),
    ("ReasmOKs", C, "{packet}", "IP packets successfully reassembled"),
    ("ReasmFails", C, "{packet}", "IP reassembly failures"),
    ("FragOKs", C, "{packet}", "IP packets successfully fragmented"),
    ("FragFails", C, "{packet}", "IP packets discarded because they needed fragmenting but could not be"),
    ("FragCreates", C, "{fragment}", "IP fragments created"),
])


class IpProbe(SnmpSectionProbe):
    section = "Ip"
    instruments = INSTRUMENTS


SPEC = snmp_spec("ip", IpProbe, "IP packets received, delivered, forwarded, discarded and fragmented per network namespace")
