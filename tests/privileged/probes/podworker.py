# SPDX-License-Identifier: Apache-2.0
"""A process the pod-scope tests (fd, io) drive one command at a time, with exactly known effects.

The worker is ``python -W ignore -c WORKER <threads>``: it starts ``threads`` idle threads (they
share its descriptor table and its /proc/<pid>/io), opens /dev/zero and /dev/null, says ``ready``
and then, per command, does exactly one ``read(2)`` of its stdin to get the command and exactly one
``write(2)`` to its stdout to answer ``ok``. Between commands every thread is blocked (a pipe read
or a futex), so its counters and descriptors stand still while a test reads them.

What each command does, besides that one read and one write:

=====================  ====================================================================
``files N``            open N more descriptors on /dev/null (``openat``, not read/write class)
``sockets N``          open N more TCP sockets (``socket``)
``read N``             N ``read(2)`` of 1 byte from /dev/zero
``write N``            N ``write(2)`` of 1 byte to /dev/null
``diskwrite P N``      N ``write(2)`` of one 4096-byte page to the existing empty file P:
                       write_bytes += N*4096 (creating P here would not be exact: a new
                       directory entry sometimes dirties a metadata block, accounted too)
``directread P N``     one ``readv(2)`` of N pages of P with O_DIRECT: read_bytes += N*4096
``fork N``             fork a child that does N ``read(2)`` and exits; wait for it (the kernel
                       adds the child's counters to this process's when it reaps it)
``spawn``              fork a child that blocks in one ``read(2)`` of a pipe; ``reap N`` writes
                       N to that pipe (one ``write(2)``), the child does N ``read(2)`` more and
                       exits, and this process waits for it
=====================  ====================================================================
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

WORKER = r'''
import mmap, os, socket, sys, threading
stop = threading.Event()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=stop.wait, daemon=True).start()
zero = os.open("/dev/zero", os.O_RDONLY)
null = os.open("/dev/null", os.O_WRONLY)
held = []
child = None
os.write(1, b"ready\n")
while True:
    words = os.read(0, 4096).split()
    if not words:
        break
    cmd, args = words[0], words[1:]
    if cmd == b"files":
        held += [os.open("/dev/null", os.O_RDONLY) for _ in range(int(args[0]))]
    elif cmd == b"sockets":
        held += [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(int(args[0]))]
    elif cmd == b"read":
        for _ in range(int(args[0])):
            os.read(zero, 1)
    elif cmd == b"write":
        for _ in range(int(args[0])):
            os.write(null, b"x")
    elif cmd == b"diskwrite":
        fd = os.open(args[0], os.O_WRONLY)
        page = b"k" * 4096
        for _ in range(int(args[1])):
            os.write(fd, page)
        os.close(fd)
    elif cmd == b"directread":
        fd = os.open(args[0], os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096 * int(args[1]))
        os.readv(fd, [buf])
        os.close(fd)
    elif cmd == b"fork":
        pid = os.fork()
        if pid == 0:
            for _ in range(int(args[0])):
                os.read(zero, 1)
            os._exit(0)
        os.waitpid(pid, 0)
    elif cmd == b"spawn":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _ in range(int(os.read(r, 64))):
                os.read(zero, 1)
            os._exit(0)
        os.close(r)
        child = (pid, w)
    elif cmd == b"reap":
        pid, w = child
        os.write(w, args[0])
        os.waitpid(pid, 0)
        os.close(w)
        child = None
    os.write(1, b"ok " + str(child[0] if child else 0).encode() + b"\n")
'''


class Worker:
    """A running worker; ``popen`` starts the command line (e.g. through ``ip netns exec``)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", "worker did not start"

    @staticmethod
    def argv(threads: int) -> list[str]:
        return [sys.executable, "-W", "ignore", "-c", WORKER, str(threads)]

    def __call__(self, *words: str | int) -> int:
        """Run one command; returns the pid of the spawned child (``spawn``), else 0."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.write(self.proc.stdin.fileno(), " ".join(map(str, words)).encode())
        answer = self.proc.stdout.readline().split()
        assert answer[:1] == [b"ok"], f"worker answered {answer!r} to {words!r}"
        return int(answer[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def start_worker(popen, threads: int = 3) -> Worker:
    """``popen(*argv, stdin=PIPE, stdout=PIPE)`` -> the started worker."""
    return Worker(popen(*Worker.argv(threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE))


def host_popen(*argv: str, **kwargs) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the host's namespaces (a hostNetwork pod's process)."""
    return subprocess.Popen(list(argv), **kwargs)


def pid_io(pid: int) -> tuple[int, int, int, int]:
    """(syscr, syscw, read_bytes, write_bytes) of /proc/<pid>/io, read here independently."""
    fields = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    return tuple(int(fields[k]) for k in ("syscr", "syscw", "read_bytes", "write_bytes"))  # type: ignore[return-value]


def fd_links(pid: int) -> list[str]:
    """Link targets of /proc/<pid>/fd, read here independently."""
    return [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]


def add(*vectors: Sequence[int]) -> tuple[int, ...]:
    return tuple(map(sum, zip(*vectors)))
