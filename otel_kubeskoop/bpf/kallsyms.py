# SPDX-License-Identifier: Apache-2.0
"""Kernel addresses as ``symbol+0xoff``, from ``/proc/kallsyms``.

A drop location (``skb:kfree_skb``'s ``location``) and a kernel stack are addresses; this names
them the way the kernel's own ``%pS`` does (``tcp_v4_rcv+0x1a2``). ``/proc/kallsyms`` (about
120,000 lines, 5 MB) is read once, on the first lookup, and each lookup is a bisection.

``kernel.kptr_restrict`` (https://docs.kernel.org/admin-guide/sysctl/kernel.html#kptr-restrict)
makes the file show every address as 0 to a reader without CAP_SYSLOG (or to everyone, at 2).
That is detected: :attr:`Kallsyms.hidden` is then the reason, and addresses are given as hex
(``0xffffffff81f28dd0``) instead of a wrong name. Names stay visible: the loader asks
:attr:`KallsymsTable.symbols` whether a kprobe target exists.

:func:`shared_kallsyms` is the process's one reader of a path: parsing takes about 0.2 s of CPU
(measured here), which a probe started again (a reload, each run of ``bench/datapath.py``) should
not pay again while the kernel's code has not moved.

:func:`read_kallsyms` reads the file and :func:`parse_kallsyms` parses its content; they are the
only reader and parser of ``/proc/kallsyms`` in the package.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from otel_kubeskoop.procfs import read_fd

__all__ = ["KALLSYMS", "MAX_BYTES", "MAX_OFFSET", "MODULES", "Kallsyms", "KallsymsTable",
           "parse_kallsyms", "read_kallsyms", "shared_kallsyms"]

KALLSYMS = "/proc/kallsyms"
#: The loaded modules and their addresses: what moves code symbols after boot.
MODULES = "/proc/modules"
#: Read cap: the file is about 5 MiB with every module of a distribution kernel loaded.
MAX_BYTES = 64 << 20

# Symbol types that are code (text), lower case for local symbols: t/T, and w/W for weak.
_TEXT_TYPES = frozenset("tTwW")
# Farther than this past the nearest symbol, an address is not inside that function: give hex.
MAX_OFFSET = 0x100000


def read_kallsyms(path: str = KALLSYMS) -> bytes:
    """The whole of ``/proc/kallsyms`` in one read without ``stat`` (procfs reports size 0), up
    to :data:`MAX_BYTES`."""
    return read_fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC), MAX_BYTES)


@dataclass(frozen=True, slots=True)
class KallsymsTable:
    """What :func:`parse_kallsyms` found."""

    #: Addresses of the text (code) symbols, sorted, and their names, in the same order.
    addresses: tuple[int, ...]
    names: tuple[str, ...]
    #: Every symbol name, of any type, without its module.
    symbols: frozenset[str]
    #: Well-formed lines.
    lines: int


def parse_kallsyms(data: bytes | str) -> KallsymsTable:
    """The symbols of ``/proc/kallsyms`` content.

    A line is ``<hex address> <type> <name>[\t[<module>]]``; a module text symbol's name is kept
    as ``name\t[module]`` (:meth:`Kallsyms.symbolize` puts the offset before the module, as
    ``%pS`` does). Malformed lines are skipped. Where two text symbols share an address the first
    in the file wins.
    """
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    pairs: dict[int, str] = {}
    symbols: set[str] = set()
    seen = 0
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3 or len(parts[1]) != 1:
            continue
        try:
            address = int(parts[0], 16)
        except ValueError:
            continue
        seen += 1
        name = parts[2]
        symbols.add(name)
        if parts[1] not in _TEXT_TYPES:
            continue
        if len(parts) == 4:
            name = f"{name}\t{parts[3].strip()}"
        pairs.setdefault(address, name)
    addresses = tuple(sorted(pairs))
    return KallsymsTable(addresses, tuple(pairs[a] for a in addresses), frozenset(symbols), seen)


class Kallsyms:
    """Lazy ``/proc/kallsyms``: :meth:`symbolize` an address to ``symbol+0xoff``."""

    def __init__(self, path: str = KALLSYMS, lines: Iterable[str] | None = None) -> None:
        """``lines`` instead of reading ``path``: a recorded excerpt, for tests."""
        self.path = path
        self._lines = lines
        self._lock = threading.Lock()
        self._addresses: tuple[int, ...] | None = None
        self._names: tuple[str, ...] = ()
        self._hidden: str | None = None

    def _load(self) -> None:
        with self._lock:
            if self._addresses is not None:
                return
            addresses: tuple[int, ...] = ()
            names: tuple[str, ...] = ()
            hidden = None
            try:
                data = read_kallsyms(self.path) if self._lines is None else "\n".join(self._lines)
                table = parse_kallsyms(data)
                addresses, names = table.addresses, table.names
                if table.lines and (not addresses or addresses == (0,)):
                    hidden = (f"{self.path} shows every address as 0 (kernel.kptr_restrict, or no "
                              "CAP_SYSLOG): kernel addresses are reported as hex")
                    addresses, names = (), ()
                elif not table.lines:
                    hidden = f"{self.path} is empty: kernel addresses are reported as hex"
            except OSError as exc:
                hidden = f"cannot read {self.path} ({exc.strerror}): kernel addresses are reported as hex"
            self._names = names
            self._hidden = hidden
            self._addresses = addresses

    @property
    def hidden(self) -> str | None:
        """Why addresses cannot be named (kptr_restrict, unreadable file), or None."""
        self._load()
        return self._hidden

    def symbolize(self, address: int) -> str:
        """``symbol+0xoff`` for ``address``; hex when it cannot be named; ``""`` for 0."""
        if not address:
            return ""
        self._load()
        addresses = self._addresses or ()
        i = bisect.bisect_right(addresses, address) - 1
        if i < 0 or address - addresses[i] > MAX_OFFSET:
            return f"{address:#x}"
        name, _, module = self._names[i].partition("\t")
        text = f"{name}+{address - addresses[i]:#x}"
        return f"{text} {module}" if module else text


_shared: dict[str, tuple[bytes, Kallsyms]] = {}
_shared_lock = threading.Lock()


def shared_kallsyms(path: str = KALLSYMS, modules: str = MODULES) -> Kallsyms:
    """The process's :class:`Kallsyms` of ``path``, a new one (read lazily) when the content of
    ``modules`` changed since the last call made one: loading or unloading a module adds, moves or
    drops code symbols; the kernel's own stay where boot put them."""
    try:
        stamp = read_fd(os.open(modules, os.O_RDONLY | os.O_CLOEXEC), MAX_BYTES)
    except OSError:
        stamp = b""
    with _shared_lock:
        got = _shared.get(path)
        if got is None or got[0] != stamp:
            got = _shared[path] = (stamp, Kallsyms(path))
        return got[1]
