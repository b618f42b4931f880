# SPDX-License-Identifier: Apache-2.0
"""Socket usage from ``/proc/net/sockstat`` and ``/proc/net/sockstat6`` (also per netns under
``/proc/<pid>/net/``).

Each line is a protocol label and ``name value`` pairs (``net/ipv4/proc.c`` ``sockstat_seq_show``,
``net/ipv6/proc.c`` ``sockstat6_seq_show``)::

    sockets: used 290
    TCP: inuse 5 orphan 0 tw 2 alloc 8 mem 1
    FRAG: inuse 0 memory 0
    TCP6: inuse 3

``inuse`` and ``tw`` are per network namespace; ``orphan``, ``alloc`` and ``mem`` (pages) are global
to the host even when read from a pod's namespace. ``sockstat6`` is absent when IPv6 is disabled.

See Documentation/filesystems/proc.rst
(https://www.kernel.org/doc/html/latest/filesystems/proc.html) and
https://www.kernel.org/doc/html/latest/networking/ip-sysctl.html (``tcp_mem``).
"""

from __future__ import annotations

from otel_kubeskoop.procfs import FileSource, ParseError

SOCKSTAT_RELPATH = "net/sockstat"
SOCKSTAT6_RELPATH = "net/sockstat6"


def parse_sockstat(data: bytes, path: str = SOCKSTAT_RELPATH) -> dict[str, dict[str, int]]:
    """Parse ``sockstat`` or ``sockstat6`` bytes into ``{label: {name: value}}``.

    Labels keep the kernel's spelling (``"sockets"``, ``"TCP"``, ``"UDP6"``). Raises
    :class:`ParseError` (naming ``path`` and the 1-based line) for an empty file, a line without a
    ``label:`` prefix, an odd number of name/value words, or a non-integer value.
    """
    result: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        label, sep, rest = line.partition(b":")
        if not sep:
            if not line.strip():
                continue
            raise ParseError(path, "expected a 'LABEL:' prefix", lineno)
        words = rest.split()
        if len(words) % 2:
            raise ParseError(path, f"odd number of name/value words ({len(words)})", lineno)
        try:
            values = list(map(int, words[1::2]))
        except ValueError:
            raise ParseError(path, "non-integer value", lineno) from None
        names = [w.decode("utf-8", "replace") for w in words[0::2]]
        result.setdefault(label.strip().decode("utf-8", "replace"), {}).update(zip(names, values))
    if not result:
        raise ParseError(path, "empty file")
    return result


def read_sockstat(source: FileSource) -> dict[str, dict[str, int]]:
    """Read and parse ``/proc/net/sockstat`` (or ``/proc/<pid>/net/sockstat``) under ``source``.

    See Documentation/filesystems/proc.rst. ``FileNotFoundError`` passes through unwrapped.
    """
    return parse_sockstat(source.read(SOCKSTAT_RELPATH), source.path(SOCKSTAT_RELPATH))


def read_sockstat6(source: FileSource) -> dict[str, dict[str, int]]:
    """Read and parse ``/proc/net/sockstat6`` (or ``/proc/<pid>/net/sockstat6``) under ``source``.

    See Documentation/filesystems/proc.rst. ``FileNotFoundError`` (IPv6 disabled) passes through
    unwrapped.
    """
    return parse_sockstat(source.read(SOCKSTAT6_RELPATH), source.path(SOCKSTAT6_RELPATH))
