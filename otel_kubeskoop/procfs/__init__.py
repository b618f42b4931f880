# SPDX-License-Identifier: Apache-2.0
"""Reading and parsing of /proc files. No OpenTelemetry and no Kubernetes imports.

Every data source has a public ``read_x(source)`` that does one full read of one file and a pure
``parse_x(data, path)`` that turns its bytes into frozen dataclasses or plain mappings. Parsers check
field counts and raise :class:`ParseError` naming the file; they never index blindly.

``FileNotFoundError`` from a source is passed through unwrapped: a missing file (IPv6 disabled, a
module not loaded) means "no data", which callers handle differently from a malformed file.
"""

from __future__ import annotations

import os
from typing import Protocol

# procfs files we read are small (net/dev on a node with 500 veths is ~70 KiB); the cap only
# stops a runaway read if a path points somewhere unexpected.
MAX_READ_BYTES = 4 << 20


class ParseError(ValueError):
    """A /proc file whose content does not have the expected shape."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class FileSource(Protocol):
    """Where a parser's bytes come from: a directory like ``/proc`` or ``/proc/<pid>``.

    ``read`` takes a path relative to that directory (``"net/dev"``) and raises
    ``FileNotFoundError`` when the file does not exist. ``path`` names the file in messages.
    """

    def read(self, relpath: str) -> bytes: ...

    def path(self, relpath: str) -> str: ...


def read_fd(fd: int, limit: int = MAX_READ_BYTES) -> bytes:
    """Read an open file to its end (procfs files report size 0, so no stat), then close it."""
    try:
        chunks = []
        total = 0
        while total < limit:
            chunk = os.read(fd, min(65536, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class ProcDir:
    """A :class:`FileSource` over a plain directory (``/proc``, ``/proc/<pid>`` or a fixture tree)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, relpath: str) -> bytes:
        return read_fd(os.open(os.path.join(self.root, relpath), os.O_RDONLY | os.O_CLOEXEC))

    def path(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def __repr__(self) -> str:
        return f"ProcDir({self.root!r})"
