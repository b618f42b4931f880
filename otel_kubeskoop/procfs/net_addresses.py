# SPDX-License-Identifier: Apache-2.0
"""A network namespace's own addresses, from ``/proc/net/fib_trie`` (IPv4) and
``/proc/net/if_inet6`` (IPv6), also per namespace under ``/proc/<pid>/net/``.

``fib_trie`` prints the routing tries; an address of the namespace is a leaf of the ``Local:``
table whose entry is ``/32 host LOCAL`` (``net/ipv4/fib_trie.c`` ``fib_trie_seq_show``)::

    Local:
      +-- 0.0.0.0/0 3 0 5
         |-- 192.0.2.2
            /32 host LOCAL

``if_inet6`` has one line per IPv6 address: 32 hex digits, then interface index, prefix length,
scope, flags and name (``net/ipv6/addrconf.c`` ``if6_seq_show``). Loopback and link-local
addresses are left out: no other host reaches this one by them.
"""

from __future__ import annotations

import ipaddress

from otel_kubeskoop.procfs import FileSource, ParseError

FIB_TRIE_RELPATH = "net/fib_trie"
IF_INET6_RELPATH = "net/if_inet6"


def _routable(text: str) -> bool:
    address = ipaddress.ip_address(text)
    return not (address.is_loopback or address.is_link_local)


def parse_fib_trie_local(data: bytes, path: str = FIB_TRIE_RELPATH) -> set[str]:
    """The IPv4 addresses of the ``Local:`` table's ``/32 host LOCAL`` leaves."""
    out: set[str] = set()
    local = False
    leaf: str | None = None
    for lineno, raw in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        line = raw.strip()
        if raw and not raw[0].isspace():  # a table header: "Main:", "Local:"
            local = line == "Local:"
            continue
        if line.startswith("|--"):
            leaf = line[3:].strip()
        elif local and leaf is not None and line.startswith("/32 host LOCAL"):
            try:
                if _routable(leaf):
                    out.add(leaf)
            except ValueError:
                raise ParseError(path, f"not an IPv4 address: {leaf!r}", lineno) from None
    return out


def parse_if_inet6(data: bytes, path: str = IF_INET6_RELPATH) -> set[str]:
    """The IPv6 addresses of ``if_inet6``, compressed as ``inet_ntop`` writes them."""
    out: set[str] = set()
    for lineno, line in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) < 6 or len(words[0]) != 32:
            raise ParseError(path, "expected 32 hex digits and five fields", lineno)
        try:
            address = ipaddress.IPv6Address(int(words[0], 16))
        except ValueError:
            raise ParseError(path, f"not hex: {words[0]!r}", lineno) from None
        if _routable(str(address)):
            out.add(address.compressed)
    return out


def read_addresses(source: FileSource) -> set[str]:
    """The namespace's routable addresses; a missing ``if_inet6`` (IPv6 off) means IPv4 only."""
    out = parse_fib_trie_local(source.read(FIB_TRIE_RELPATH), source.path(FIB_TRIE_RELPATH))
    try:
        out |= parse_if_inet6(source.read(IF_INET6_RELPATH), source.path(IF_INET6_RELPATH))
    except FileNotFoundError:
        pass
    return out
