# SPDX-License-Identifier: Apache-2.0
"""IPVS totals from ``/proc/net/ip_vs_stats`` (per network namespace; present only when the
``ip_vs`` module is loaded).

Written by ``ip_vs_stats_show`` in ``net/netfilter/ipvs/ip_vs_ctl.c``::

       Total Incoming Outgoing         Incoming         Outgoing
       Conns  Packets  Packets            Bytes            Bytes
        1A2B    3C4D5    2B3C4         1F2E3D4C        A1B2C3D4E

     Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s
           3       2A       1F             5DC0            1F400

The third line holds the five hex totals ``conns inpkts outpkts inbytes outbytes``. The rate
section after the blank line is the kernel's own 2-second estimate and is not parsed; rates are
derived from the counters downstream.

See https://www.kernel.org/doc/html/latest/networking/ipvs-sysctl.html.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_kubeskoop.procfs import FileSource, ParseError

RELPATH = "net/ip_vs_stats"
_TOTALS_LINE = 3  # 1-based line number of the totals row


@dataclass(frozen=True, slots=True)
class IPVSStats:
    """The totals row of ``/proc/net/ip_vs_stats``."""

    connections: int
    incoming_packets: int
    outgoing_packets: int
    incoming_bytes: int
    outgoing_bytes: int


def parse_ip_vs_stats(data: bytes, path: str = RELPATH) -> IPVSStats:
    """Parse ``ip_vs_stats`` bytes into :class:`IPVSStats` from the totals row (line 3).

    Raises :class:`ParseError` (naming ``path`` and the line) when the file has fewer than three
    lines, or the totals row does not have exactly five hex columns.
    """
    lines = data.splitlines()
    if len(lines) < _TOTALS_LINE:
        raise ParseError(path, f"expected 2 header lines and a totals line, got {len(lines)} lines")
    cols = lines[_TOTALS_LINE - 1].split()
    if len(cols) != 5:
        raise ParseError(path, f"expected 5 totals, got {len(cols)}", _TOTALS_LINE)
    try:
        conns, inpkts, outpkts, inbytes, outbytes = (int(c, 16) for c in cols)
    except ValueError:
        raise ParseError(path, "non-hex total", _TOTALS_LINE) from None
    return IPVSStats(conns, inpkts, outpkts, inbytes, outbytes)


def read_ip_vs_stats(source: FileSource) -> IPVSStats:
    """Read and parse ``/proc/net/ip_vs_stats`` under ``source``.

    See https://www.kernel.org/doc/html/latest/networking/ipvs-sysctl.html. ``FileNotFoundError``
    (IPVS not loaded) passes through unwrapped.
    """
    return parse_ip_vs_stats(source.read(RELPATH), source.path(RELPATH))
