# SPDX-License-Identifier: Apache-2.0
"""Per-CPU packet-processing counters from ``/proc/net/softnet_stat``.

One line per online CPU of ``%08x`` hex columns, written by ``softnet_seq_show`` in
``net/core/net-procfs.c``:

====== ======================= =============================================================
column field                   notes
====== ======================= =============================================================
0      processed               packets taken off the backlog and handed to the stack
1      dropped                 packets dropped because the backlog was full
                               (``net.core.netdev_max_backlog``)
2      time_squeeze            ``net_rx_action`` ran out of budget or time with work left
3-7    (zero)                  unused, formerly fastroute
8      (zero)                  formerly cpu_collision
9      received_rps            RPS inter-processor interrupts received
10     flow_limit_count        packets dropped by the flow limit (``CONFIG_NET_FLOW_LIMIT``)
11     backlog_len             input_pkt_queue + process_queue length (newer kernels)
12     cpu                     CPU id owning this line (newer kernels)
13     input_qlen              input_pkt_queue length (newer kernels, not parsed)
14     process_qlen            process_queue length (newer kernels, not parsed)
====== ======================= =============================================================

Older kernels print 11 columns (0-10), then 13 (``backlog_len`` and ``cpu`` added), and current
kernels 15. Offline CPUs are skipped, so without column 12 the line number is only a best guess
for the CPU. Columns past those listed here are ignored.

The file is global (not per network namespace). See
https://www.kernel.org/doc/html/latest/networking/scaling.html and
https://www.kernel.org/doc/html/latest/admin-guide/sysctl/net.html (``netdev_max_backlog``).
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_kubeskoop.procfs import FileSource, ParseError

RELPATH = "net/softnet_stat"
_MIN_COLUMNS = 11


@dataclass(frozen=True, slots=True)
class SoftnetStat:
    """One CPU's line of ``/proc/net/softnet_stat``."""

    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    received_rps: int
    flow_limit_count: int
    backlog_len: int


def parse_softnet_stat(data: bytes, path: str = RELPATH) -> list[SoftnetStat]:
    """Parse ``softnet_stat`` bytes into one :class:`SoftnetStat` per line, in file order.

    ``cpu`` is column 12 when present, otherwise the 0-based line index; ``backlog_len`` is 0 when
    column 11 is absent. Raises :class:`ParseError` (naming ``path`` and the 1-based line) for an
    empty file, a line with fewer than 11 columns, or a non-hex column.
    """
    result: list[SoftnetStat] = []
    for index, line in enumerate(data.splitlines()):
        cols = line.split()
        if not cols:
            continue
        ncols = len(cols)
        if ncols < _MIN_COLUMNS:
            raise ParseError(
                path, f"expected at least {_MIN_COLUMNS} columns, got {ncols}", index + 1
            )
        try:
            stat = SoftnetStat(
                int(cols[12], 16) if ncols > 12 else index,
                int(cols[0], 16),
                int(cols[1], 16),
                int(cols[2], 16),
                int(cols[9], 16),
                int(cols[10], 16),
                int(cols[11], 16) if ncols > 11 else 0,
            )
        except ValueError:
            raise ParseError(path, "non-hex column", index + 1) from None
        result.append(stat)
    if not result:
        raise ParseError(path, "empty file")
    return result


def read_softnet_stat(source: FileSource) -> list[SoftnetStat]:
    """Read and parse ``/proc/net/softnet_stat`` under ``source``.

    See https://www.kernel.org/doc/html/latest/networking/scaling.html. ``FileNotFoundError``
    passes through unwrapped.
    """
    return parse_softnet_stat(source.read(RELPATH), source.path(RELPATH))
