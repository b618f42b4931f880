# SPDX-License-Identifier: Apache-2.0
"""Run work inside other network namespaces, on a short-lived thread that ``setns(2)``s.

``setns(2)`` moves only the calling thread, and what that thread then does acts on its new
namespace: a netlink socket belongs to the namespace it was made in, libbpf's TC calls open their
netlink socket in the calling thread's namespace, ``/proc/thread-self/net/*`` shows the thread's
namespace. :func:`run_in_netns` runs a batch of such jobs on one new thread, which enters each
job's namespace in turn and ends when the batch is done: no other agent thread ever leaves the
agent's namespace, and a thread that could not go back takes nothing with it. The thread holds
its own duplicates of the namespace fds, so the caller may close its fds at any time.

Bounded: the caller waits at most ``timeout`` seconds (jobs not done by then get a
``TimeoutError``), and at most :data:`MAX_THREADS` such threads are alive at once, so a job that
hangs in the kernel cannot make the agent pile up threads. See
https://man7.org/linux/man-pages/man2/setns.2.html and
https://man7.org/linux/man-pages/man7/network_namespaces.7.html.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["CLONE_NEWNET", "DEFAULT_TIMEOUT", "MAX_THREADS", "run_in_netns"]

#: ``setns(2)`` nstype for a network namespace (``<linux/sched.h>``).
CLONE_NEWNET = 0x40000000
#: Seconds a caller waits for a batch by default.
DEFAULT_TIMEOUT = 30.0
#: Namespace threads alive at once in the process, hung ones included.
MAX_THREADS = 8

_T = TypeVar("_T")
_NOT_DONE = object()
_THREAD_NET = "/proc/thread-self/ns/net"
_FLAGS = os.O_RDONLY | os.O_CLOEXEC
# One process-wide bound: the threads are the process's, whoever starts them.
_slots = threading.BoundedSemaphore(MAX_THREADS)


@functools.cache
def _libc_setns():  # type: ignore[no-untyped-def]
    func = ctypes.CDLL(None, use_errno=True).setns
    func.argtypes = (ctypes.c_int, ctypes.c_int)
    func.restype = ctypes.c_int
    return func


def _setns(fd: int, inode: int) -> None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread (Python 3.11 has no ``os.setns``)."""
    if _libc_setns()(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET) into network namespace {inode}: {os.strerror(err)}")


def run_in_netns(jobs: Sequence[tuple[int | None, Callable[[], _T]]], *,
                 timeout: float = DEFAULT_TIMEOUT,
                 what: str = "namespace jobs") -> list[_T | BaseException]:
    """Run each ``(nsfd, job)`` inside the network namespace of ``nsfd`` (``None``: the caller's
    own), in order, on one short-lived thread; return each job's result or exception in its place.

    A job whose namespace is the one the thread is already in runs without ``setns`` (so work in
    the caller's own namespace needs no privilege). A failed ``setns`` is that job's ``OSError``,
    naming the namespace. Jobs not finished within ``timeout`` seconds (or not started because
    :data:`MAX_THREADS` threads are still busy) get a ``TimeoutError`` naming ``what``; a job
    still running then finishes on its own, for nobody.
    """
    if not jobs:
        return []
    deadline = time.monotonic() + timeout
    if not _slots.acquire(timeout=timeout):
        busy = TimeoutError(f"{what}: {MAX_THREADS} namespace threads still busy after {timeout}s")
        return [busy] * len(jobs)
    results: list[Any] = [_NOT_DONE] * len(jobs)
    fds: list[int | None] = []
    try:
        for i, (nsfd, _job) in enumerate(jobs):
            try:
                fds.append(None if nsfd is None else os.dup(nsfd))
            except OSError as exc:  # a bad fd: that job fails, the others run
                fds.append(None)
                results[i] = exc
        thread = threading.Thread(target=_work, args=(jobs, fds, results), name="kubeskoop-netns",
                                  daemon=True)
        thread.start()
    except BaseException:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        _slots.release()
        raise
    thread.join(max(0.0, deadline - time.monotonic()))
    late = TimeoutError(f"{what}: not done within {timeout}s")
    return [late if r is _NOT_DONE else r for r in list(results)]


def _work(jobs: Sequence[tuple[int | None, Callable[[], Any]]], fds: list[int | None],
          results: list[Any]) -> None:
    home = -1
    try:
        here = os.stat(_THREAD_NET).st_ino  # a new thread starts in its creator's namespace
        if any(nsfd is None for nsfd, _job in jobs):
            home = os.open(_THREAD_NET, _FLAGS)
        for i, (fd, (_nsfd, job)) in enumerate(zip(fds, jobs)):
            if results[i] is not _NOT_DONE:
                continue  # its fd could not be duplicated
            try:
                target = home if fd is None else fd
                inode = os.fstat(target).st_ino
                if inode != here:
                    _setns(target, inode)
                    here = inode
                results[i] = job()
            except BaseException as exc:  # handed to the caller, whatever it is
                results[i] = exc
    except BaseException as exc:  # the thread could not even start its work
        for i, r in enumerate(results):
            if r is _NOT_DONE:
                results[i] = exc
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        if home >= 0:
            os.close(home)
        _slots.release()
