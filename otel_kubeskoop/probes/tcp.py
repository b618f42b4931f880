# SPDX-License-Identifier: Apache-2.0
"""tcp: the TCP-MIB counters of each network namespace (/proc/<pid>/net/snmp, ``Tcp:``)."""

from otel_kubeskoop.probes._snmp import SnmpSectionProbe, snmp_spec
from otel_kubeskoop.vocabulary.instruments import C, U, mib

# /proc/<pid>/net/snmp, "Tcp:" section (RFC 4022 TCP-MIB).
INSTRUMENTS = mib("tcp", [
    ("ActiveOpens", C, "{connection}", "TCP connections opened by connect() (SYN_SENT transitions)"),
    ("PassiveOpens", C, "{connection}", "TCP connections accepted from LISTEN (SYN_RECV transitions)"),
    ("RetransSegs", C, "{segment}", "TCP segments retransmitted"),
    ("AttemptFails", C, "{connection}", "TCP connection attempts that failed (SYN_SENT/SYN_RECV to CLOSED or LISTEN)"),
    ("EstabResets", C, "{connection}", "TCP connections reset from ESTABLISHED or CLOSE_WAIT"),
    ("CurrEstab", U, "{connection}", "TCP connections currently in ESTABLISHED or CLOSE_WAIT"),
    ("InSegs", C, "{segment}", "TCP segments received, including errors"),
    ("OutSegs", C, "{segment}", "TCP segments sent, excluding retransmissions"),
    ("InErrs", C, "{segment}", "TCP segments received in error (bad checksum and the like)"),
    ("OutRsts", C, "{segment}", "TCP segments sent with the RST flag"),
])


class TcpProbe(SnmpSectionProbe):
    section = "Tcp"
    instruments = INSTRUMENTS


SPEC = snmp_spec("tcp", TcpProbe, "TCP opens, resets, segments and retransmissions per network namespace")
