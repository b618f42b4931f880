# SPDX-License-Identifier: Apache-2.0
"""Per-interface counters from ``/proc/net/dev`` (also ``/proc/<pid>/net/dev`` for one netns).

The kernel writes the file in ``net/core/net-procfs.c`` (``dev_seq_show``): two header lines,
then one line per interface, ``"%6s:%8llu %7llu ..."`` with 16 counters, eight receive then eight
transmit. The name is right-aligned in six columns and a wide first counter abuts the colon
(``eth0:57557320``), so a line is split at its first ``:``. Interface names cannot contain ``:``
or whitespace (``dev_valid_name``), so the first ``:`` always ends the name.

Field meanings: https://www.kernel.org/doc/html/latest/networking/statistics.html and
Documentation/filesystems/proc.rst (https://www.kernel.org/doc/html/latest/filesystems/proc.html).
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_kubeskoop.procfs import FileSource, ParseError

RELPATH = "net/dev"
_FIELDS = 16


@dataclass(frozen=True, slots=True)
class NetDevStats:
    """One interface's line of ``/proc/net/dev``, fields in the kernel's column order."""

    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    rx_fifo: int
    rx_frame: int
    rx_compressed: int
    rx_multicast: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int
    tx_fifo: int
    tx_colls: int
    tx_carrier: int
    tx_compressed: int


def parse_net_dev(data: bytes, path: str = RELPATH) -> dict[str, NetDevStats]:
    """Parse the bytes of a ``net/dev`` file into ``{interface name: NetDevStats}`` in file order.

    Raises :class:`ParseError` (naming ``path`` and the 1-based line) when the two header lines are
    missing, a line has no ``:``, or a line does not have exactly 16 decimal counters.
    """
    lines = data.splitlines()
    if len(lines) < 2 or b"|" not in lines[0] or b"|" not in lines[1]:
        raise ParseError(path, "expected 2 header lines")
    result: dict[str, NetDevStats] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        name, sep, rest = line.partition(b":")
        if not sep:
            if not line.strip():
                continue
            raise ParseError(path, "no ':' after the interface name", lineno)
        fields = rest.split()
        if len(fields) != _FIELDS:
            raise ParseError(path, f"expected {_FIELDS} counters, got {len(fields)}", lineno)
        try:
            stats = NetDevStats(*map(int, fields))
        except ValueError:
            raise ParseError(path, "non-integer counter", lineno) from None
        result[name.strip().decode("utf-8", "replace")] = stats
    return result


def read_net_dev(source: FileSource) -> dict[str, NetDevStats]:
    """Read and parse ``/proc/net/dev`` (or ``/proc/<pid>/net/dev``) under ``source``.

    See https://www.kernel.org/doc/html/latest/networking/statistics.html. ``FileNotFoundError``
    passes through unwrapped.
    """
    return parse_net_dev(source.read(RELPATH), source.path(RELPATH))
