# SPDX-License-Identifier: Apache-2.0
"""tcpext: Linux TCP extension counters of each network namespace (/proc/<pid>/net/netstat, ``TcpExt:``).

Listen-queue drops, retransmission kinds, aborts, PAWS rejects and receive-queue drops: the 32 keys
upstream exports. Key meanings: https://www.kernel.org/doc/html/latest/networking/snmp_counter.html
"""

from __future__ import annotations

from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._procfs import NetnsProcfsProbe, counters
from otel_kubeskoop.procfs.net_snmp import read_net_netstat
from otel_kubeskoop.vocabulary.instruments import C, mib
from otel_kubeskoop.topology.netns import Netns

# /proc/<pid>/net/netstat, "TcpExt:" section: the 32 keys upstream exports.
INSTRUMENTS = mib("tcpext", [
    ("ListenDrops", C, "{packet}", "SYNs and ACKs dropped at a listening socket (includes ListenOverflows)"),
    ("ListenOverflows", C, "{packet}", "Connections dropped because the accept queue was full"),
    ("TCPSynRetrans", C, "{segment}", "SYN and SYN-ACK retransmissions"),
    ("TCPFastRetrans", C, "{segment}", "Fast retransmissions"),
    ("TCPRetransFail", C, "{segment}", "Retransmissions that failed to be sent"),
    ("TCPTimeouts", C, "{timeout}", "Retransmission timer expiries (RTO)"),
    ("TCPAbortOnClose", C, "{connection}", "Connections reset on close() with unread data"),
    ("TCPAbortOnMemory", C, "{connection}", "Connections aborted for lack of memory"),
    ("TCPAbortOnTimeout", C, "{connection}", "Connections aborted after too many retransmission timeouts"),
    ("TCPAbortOnLinger", C, "{connection}", "Connections aborted in FIN_WAIT2 after the linger time"),
    ("TCPAbortOnData", C, "{connection}", "Connections reset on unexpected data after close"),
    ("TCPAbortFailed", C, "{connection}", "Resets that could not be sent"),
    ("TCPACKSkippedSynRecv", C, "{segment}", "Rate-limited duplicate ACKs not sent in SYN_RECV"),
    ("TCPACKSkippedPAWS", C, "{segment}", "Rate-limited ACKs not sent for PAWS failures"),
    ("TCPACKSkippedSeq", C, "{segment}", "Rate-limited ACKs not sent for out-of-window sequence numbers"),
    ("TCPACKSkippedFinWait2", C, "{segment}", "Rate-limited ACKs not sent in FIN_WAIT2"),
    ("TCPACKSkippedTimeWait", C, "{segment}", "Rate-limited ACKs not sent in TIME_WAIT"),
    ("TCPACKSkippedChallenge", C, "{segment}", "Rate-limited challenge ACKs not sent"),
    ("TCPRcvQDrop", C, "{packet}", "Packets dropped because the receive queue or socket memory was full"),
    ("TCPMemoryPressures", C, "{event}", "Times TCP entered memory pressure"),
    ("TCPMemoryPressuresChrono", C, "ms", "Milliseconds spent under TCP memory pressure"),
    ("PAWSActive", C, "{packet}", "Active-open packets rejected by PAWS"),
    ("PAWSEstab", C, "{packet}", "Packets on established connections rejected by PAWS"),
    ("EmbryonicRsts", C, "{segment}", "Resets received on connections in SYN_RECV"),
    ("TCPWinProbe", C, "{segment}", "Zero-window probes sent"),
    ("TCPKeepAlive", C, "{segment}", "Keepalive probes sent"),
    ("TCPMTUPFail", C, "{event}", "Path MTU probes that failed"),
    ("TCPMTUPSuccess", C, "{event}", "Path MTU probes that succeeded"),
    ("TCPZeroWindowDrop", C, "{packet}", "Segments dropped because the receive window was zero"),
    ("TCPBacklogDrop", C, "{packet}", "Packets dropped because the socket backlog was full"),
    ("PFMemallocDrop", C, "{packet}", "pfmemalloc packets dropped by a socket not allowed to use reserves"),
    ("TCPWqueueTooBig", C, "{event}", "Sends refused because the write queue was too big"),
])


class TcpextProbe(NetnsProcfsProbe):
    required = ("net/netstat",)

    def collect_netns(self, ns: Netns) -> list[Sample]:
        return counters(INSTRUMENTS, read_net_netstat(ns).get("TcpExt", {}), ns.inode)


SPEC = ProbeSpec(
    name="tcpext",
    summary="TCP listen drops, retransmission kinds, aborts and queue drops per network namespace",
    kinds=frozenset({Kind.METRICS}),
    source=Source.PROCFS,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="one read of /proc/<pid>/net/netstat per namespace per collection",
    default_enabled=True,
    factory=TcpextProbe,
    instruments=INSTRUMENTS,
    requires=("/proc/<pid>/net/netstat",),
)
