# SPDX-License-Identifier: Apache-2.0
"""Protocol MIB counters from ``/proc/net/snmp`` and ``/proc/net/netstat`` (also per netns under
``/proc/<pid>/net/``).

Both files are written in pairs of lines, a names line and a values line with the same prefix::

    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ...
    Tcp: 1 200 120000 -1 ...

``net/snmp`` holds the Ip, Icmp, IcmpMsg, Tcp, Udp and UdpLite groups (``net/ipv4/proc.c``,
``snmp_seq_show``); ``net/netstat`` holds TcpExt, IpExt and MPTcpExt (``netstat_seq_show``).
IcmpMsg is only printed for ICMP types seen so far, and is split into several line pairs when
many types have been seen; pairs with the same prefix are merged. Values are signed
(``Tcp: MaxConn`` is ``-1``). Unknown groups and keys are kept, so newer kernels need no change
here.

Counter meanings: https://www.kernel.org/doc/html/latest/networking/snmp_counter.html and
Documentation/filesystems/proc.rst (https://www.kernel.org/doc/html/latest/filesystems/proc.html).
"""

from __future__ import annotations

from otel_kubeskoop.procfs import FileSource, ParseError

SNMP_RELPATH = "net/snmp"
NETSTAT_RELPATH = "net/netstat"


def parse_net_snmp(data: bytes, path: str = SNMP_RELPATH) -> dict[str, dict[str, int]]:
    """Parse ``net/snmp`` or ``net/netstat`` bytes into ``{group: {counter name: value}}``.

    Raises :class:`ParseError` (naming ``path`` and the 1-based line) for an empty file, a line
    without a ``Group:`` prefix, a names line without a values line, a values line whose prefix
    differs from its names line, differing counts of names and values, or a non-integer value.
    """
    # Blank lines are skipped; each kept line remembers its 1-based number for messages.
    lines = [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ParseError(path, "empty file")
    result: dict[str, dict[str, int]] = {}
    count = len(lines)
    i = 0
    while i < count:
        names_no, names_line = lines[i]
        prefix, sep, names_rest = names_line.partition(b":")
        if not sep:
            raise ParseError(path, "expected a 'Group:' prefix", names_no)
        if i + 1 >= count:
            raise ParseError(path, f"names line for {_text(prefix)!r} has no values line", names_no)
        values_no, values_line = lines[i + 1]
        values_prefix, sep, values_rest = values_line.partition(b":")
        if not sep or values_prefix != prefix:
            raise ParseError(
                path,
                f"values line prefix {_text(values_prefix)!r} does not match {_text(prefix)!r}",
                values_no,
            )
        names = names_rest.split()
        values = values_rest.split()
        if len(names) != len(values):
            raise ParseError(
                path,
                f"{_text(prefix)!r} has {len(names)} names but {len(values)} values",
                values_no,
            )
        try:
            ints = list(map(int, values))
        except ValueError:
            raise ParseError(path, f"non-integer value in {_text(prefix)!r}", values_no) from None
        group = result.setdefault(_text(prefix), {})
        group.update(zip(map(_text, names), ints))
        i += 2
    return result


def parse_net_netstat(data: bytes, path: str = NETSTAT_RELPATH) -> dict[str, dict[str, int]]:
    """Parse ``net/netstat`` bytes; same format and errors as :func:`parse_net_snmp`."""
    return parse_net_snmp(data, path)


def read_net_snmp(source: FileSource) -> dict[str, dict[str, int]]:
    """Read and parse ``/proc/net/snmp`` (or ``/proc/<pid>/net/snmp``) under ``source``.

    See https://www.kernel.org/doc/html/latest/networking/snmp_counter.html. ``FileNotFoundError``
    passes through unwrapped.
    """
    return parse_net_snmp(source.read(SNMP_RELPATH), source.path(SNMP_RELPATH))


def read_net_netstat(source: FileSource) -> dict[str, dict[str, int]]:
    """Read and parse ``/proc/net/netstat`` (or ``/proc/<pid>/net/netstat``) under ``source``.

    See https://www.kernel.org/doc/html/latest/networking/snmp_counter.html. ``FileNotFoundError``
    passes through unwrapped.
    """
    return parse_net_snmp(source.read(NETSTAT_RELPATH), source.path(NETSTAT_RELPATH))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
