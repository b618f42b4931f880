# SPDX-License-Identifier: Apache-2.0
"""udp: the UDP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Udp:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary.instruments import C, mib

# /proc/<pid>/net/snmp, "Udp:" section (RFC 4113 UDP-MIB plus Linux additions).
INSTRUMENTS = mib("udp", [
    ("InDatagrams", C, "{datagram}", "UDP datagrams delivered to sockets"),
    ("NoPorts", C, "{datagram}", "UDP datagrams received for a port with no listener"),
    ("InErrors", C, "{datagram}", "UDP datagrams that could not be delivered, other than NoPorts"),
    ("OutDatagrams", C, "{datagram}", "UDP datagrams sent"),
    ("RcvbufErrors", C, "{datagram}", "UDP datagrams dropped because the socket receive buffer was full"),
    ("SndbufErrors", C, "{datagram}", "UDP datagrams not sent because the socket send buffer was full"),
    ("InCsumErrors", C, "{datagram}", "UDP datagrams received with a bad checksum"),
    ("IgnoredMulti", C, "{datagram}", "UDP multicast/broadcast datagrams ignored for lack of a listener"),
])


class UdpProbe(SnmpSectionProbe):
    section = "Udp"
    instruments = INSTRUMENTS


SPEC = snmp_spec("udp", UdpProbe, "UDP datagrams, closed-port hits and buffer drops per network namespace")
