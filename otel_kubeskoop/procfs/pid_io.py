# SPDX-License-Identifier: Apache-2.0
"""I/O accounting of one process, from ``/proc/<pid>/io``.

Written by ``do_io_accounting`` in ``fs/proc/base.c`` (``CONFIG_TASK_IO_ACCOUNTING``), seven
``key: value`` lines, all unsigned decimal::

    rchar: 323934931               bytes read by read(2) and the like (any file, socket, pipe)
    wchar: 323929600               bytes written by write(2) and the like
    syscr: 632687                  read-class system calls
    syscw: 632675                  write-class system calls
    read_bytes: 0                  bytes this process caused to be fetched from storage
    write_bytes: 323932160         bytes this process caused to be sent to storage (at page-dirty
                                   time, so page-granular for buffered writes)
    cancelled_write_bytes: 0       write_bytes undone (a truncate of dirty page cache)

For ``/proc/<tgid>/io`` the kernel sums the whole thread group: every live thread's counters plus
``signal->ioac``, which holds the threads that have exited *and the children this process has
reaped* (``wait_task_zombie`` in ``kernel/exit.c`` adds the child's totals to the parent's). So one
read per process covers its threads, and a parent's counters grow when it reaps a child.

Reading another process's file needs ptrace read access (``PTRACE_MODE_READ_FSCREDS``; root or
``CAP_SYS_PTRACE``). See https://docs.kernel.org/filesystems/proc.html (section 3.3,
``/proc/<pid>/io``) and https://docs.kernel.org/accounting/taskstats.html.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from otel_kubeskoop.procfs import FileSource, ParseError

RELPATH = "io"


@dataclass(frozen=True, slots=True)
class PidIO:
    """The seven counters of one ``/proc/<pid>/io`` file."""

    rchar: int
    wchar: int
    syscr: int
    syscw: int
    read_bytes: int
    write_bytes: int
    cancelled_write_bytes: int


_KEYS = tuple(f.name for f in fields(PidIO))


def parse_pid_io(data: bytes, path: str = RELPATH) -> PidIO:
    """Parse ``/proc/<pid>/io`` bytes.

    Keys the kernel may add later are ignored. Raises :class:`ParseError` (naming ``path`` and the
    1-based line) for a line that is not ``key: number`` and when one of the seven keys is missing.
    """
    values: dict[str, int] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(b":")
        if not sep:
            raise ParseError(path, "expected 'key: value'", lineno)
        try:
            values[key.strip().decode("ascii")] = int(value)
        except (ValueError, UnicodeDecodeError):
            raise ParseError(path, f"non-numeric value for {key.strip()!r}", lineno) from None
    missing = [k for k in _KEYS if k not in values]
    if missing:
        raise ParseError(path, f"missing {', '.join(missing)}")
    return PidIO(*(values[k] for k in _KEYS))


def read_pid_io(source: FileSource) -> PidIO:
    """Read and parse ``io`` under ``source`` (a ``/proc/<pid>`` directory).

    See https://docs.kernel.org/filesystems/proc.html (``/proc/<pid>/io``). ``FileNotFoundError``
    (the process exited) and ``PermissionError`` (no ptrace access) pass through unwrapped.
    """
    return parse_pid_io(source.read(RELPATH), source.path(RELPATH))
