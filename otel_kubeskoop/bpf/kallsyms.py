# SPDX-License-Identifier: Apache-2.0
"""Kernel addresses as ``symbol+0xoff``, from ``/proc/kallsyms``.

A drop location (``skb:kfree_skb``'s ``location``) and a kernel stack are addresses; this names
them the way the kernel's own ``%pS`` does (``tcp_v4_rcv+0x1a2``). ``/proc/kallsyms`` (about
120,000 lines, 5 MB) is read once, on the first lookup, and each lookup is a bisection.

``kernel.kptr_restrict`` (https://docs.kernel.org/admin-guide/sysctl/kernel.html#kptr-restrict)
makes the file show every address as 0 to a reader without CAP_SYSLOG (or to everyone, at 2).
That is detected: :attr:`Kallsyms.hidden` is then the reason, and addresses are given as hex
(``0xffffffff81f28dd0``) instead of a wrong name.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable

__all__ = ["KALLSYMS", "Kallsyms", "parse_kallsyms"]

KALLSYMS = "/proc/kallsyms"

# Symbol types that are code (text), lower case for local symbols: t/T, and w/W for weak.
_TEXT_TYPES = frozenset("tTwW")
# Farther than this past the nearest symbol, an address is not inside that function: give hex.
MAX_OFFSET = 0x100000


def parse_kallsyms(lines: Iterable[bytes | str]) -> tuple[list[int], list[str], int]:
    """(sorted addresses, their names, lines seen) of the text symbols in kallsyms ``lines``.

    A line is ``<hex address> <type> <name>[\\t[<module>]]``; a module symbol's name is kept as
    ``name\\t[module]`` (:meth:`Kallsyms.symbolize` puts the offset before the module, as ``%pS``
    does). Malformed lines are skipped. Where two names share an address the first in the file
    wins.
    """
    pairs: dict[int, str] = {}
    seen = 0
    for raw in lines:
        line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        parts = line.split(None, 3)
        if len(parts) < 3 or len(parts[1]) != 1:
            continue
        try:
            address = int(parts[0], 16)
        except ValueError:
            continue
        seen += 1
        if parts[1] not in _TEXT_TYPES:
            continue
        name = parts[2]
        if len(parts) == 4:
            name = f"{name}\t{parts[3].strip()}"
        pairs.setdefault(address, name)
    addresses = sorted(pairs)
    return addresses, [pairs[a] for a in addresses], seen


class Kallsyms:
    """Lazy ``/proc/kallsyms``: :meth:`symbolize` an address to ``symbol+0xoff``."""

    def __init__(self, path: str = KALLSYMS, lines: Iterable[bytes | str] | None = None) -> None:
        """``lines`` instead of reading ``path``: a recorded excerpt, for tests."""
        self.path = path
        self._lines = lines
        self._lock = threading.Lock()
        self._addresses: list[int] | None = None
        self._names: list[str] = []
        self._hidden: str | None = None

    def _load(self) -> None:
        with self._lock:
            if self._addresses is not None:
                return
            addresses: list[int] = []
            names: list[str] = []
            hidden = None
            try:
                if self._lines is not None:
                    addresses, names, seen = parse_kallsyms(self._lines)
                else:
                    with open(self.path, "rb") as f:
                        addresses, names, seen = parse_kallsyms(f)
                if seen and (not addresses or addresses == [0]):
                    hidden = (f"{self.path} shows every address as 0 (kernel.kptr_restrict, or no "
                              "CAP_SYSLOG): kernel addresses are reported as hex")
                    addresses, names = [], []
                elif not seen:
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
        addresses = self._addresses or []
        i = bisect.bisect_right(addresses, address) - 1
        if i < 0 or address - addresses[i] > MAX_OFFSET:
            return f"{address:#x}"
        name, _, module = self._names[i].partition("\t")
        text = f"{name}+{address - addresses[i]:#x}"
        return f"{text} {module}" if module else text
