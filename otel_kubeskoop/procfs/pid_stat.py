# SPDX-License-Identifier: Apache-2.0
"""Identity of one process from ``/proc/<pid>/stat``: parent, thread count and start time.

Written by ``do_task_stat`` in ``fs/proc/array.c``: one line of space-separated fields, the
second being the command name in parentheses, which may itself contain spaces and parentheses
(``prctl(PR_SET_NAME)``), so the line is split at the *last* ``)``. Fields used here (1-based, as
proc(5) numbers them):

===== =========== ===============================================================
field name        notes
===== =========== ===============================================================
1     pid
2     comm        up to 15 bytes, in parentheses
3     state       one letter (R, S, D, Z, ...)
4     ppid        the parent's pid (0 for the init of a pid namespace seen from outside)
20    num_threads
22    starttime   clock ticks after boot when the process started
===== =========== ===============================================================

``(pid, starttime)`` names a process uniquely across pid reuse. See
https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_kubeskoop.procfs import FileSource, ParseError

RELPATH = "stat"
# Fields after the comm's closing parenthesis start at field 3 (state).
_AFTER_COMM = 3
_MIN_FIELDS = 22


@dataclass(frozen=True, slots=True)
class PidStat:
    pid: int
    comm: str
    state: str
    ppid: int
    num_threads: int
    starttime: int


def parse_pid_stat(data: bytes, path: str = RELPATH) -> PidStat:
    """Parse ``/proc/<pid>/stat`` bytes.

    Raises :class:`ParseError` naming ``path`` when the comm's parentheses are missing, when there
    are fewer than 22 fields, or when a numeric field is not a number.
    """
    open_paren = data.find(b"(")
    close_paren = data.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ParseError(path, "no '(comm)' field")
    rest = data[close_paren + 1:].split()
    if len(rest) + _AFTER_COMM - 1 < _MIN_FIELDS:
        raise ParseError(path, f"expected at least {_MIN_FIELDS} fields, got {len(rest) + _AFTER_COMM - 1}")
    try:
        return PidStat(
            pid=int(data[:open_paren]),
            comm=data[open_paren + 1:close_paren].decode("utf-8", "replace"),
            state=rest[0].decode("ascii", "replace"),
            ppid=int(rest[4 - _AFTER_COMM]),
            num_threads=int(rest[20 - _AFTER_COMM]),
            starttime=int(rest[22 - _AFTER_COMM]),
        )
    except ValueError:
        raise ParseError(path, "non-numeric pid, ppid, num_threads or starttime") from None


def read_pid_stat(source: FileSource) -> PidStat:
    """Read and parse ``stat`` under ``source`` (a ``/proc/<pid>`` directory).

    See https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html. ``FileNotFoundError`` (the
    process exited) passes through unwrapped.
    """
    return parse_pid_stat(source.read(RELPATH), source.path(RELPATH))
