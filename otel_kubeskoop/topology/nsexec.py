# SPDX-License-Identifier: Apache-2.0
"""Run work inside other network namespaces, on a thread of the agent's that ``setns(2)``s.

``setns(2)`` moves only the calling thread, and what that thread then does acts on its new
namespace: a netlink socket belongs to the namespace it was made in, libbpf's TC calls open their
netlink socket in the calling thread's namespace, ``/proc/thread-self/net/*`` shows the thread's
namespace. So the agent's own threads never enter another namespace; a :class:`NetnsRunner`
thread does it for them:

- :func:`run_in_netns` runs one batch on a thread of its own, which enters each job's namespace in
  turn and ends with the batch, so a thread that could not go back takes nothing with it (netlink
  sockets, TC attach);
- a kept :class:`NetnsRunner` serves many small batches on one thread (the reads of namespaces
  without a process, one file at a time), and goes back to the namespace it started in whenever it
  has nothing queued, so an idle runner never keeps a deleted namespace (and its veth devices)
  alive. If it cannot go back, the thread ends, and the next batch starts another.

The thread holds its own duplicates of the namespace fds, so callers may close theirs at any time.
Bounded: a caller waits at most ``timeout`` seconds (jobs not done by then get a ``TimeoutError``
and, if not started, never run), and at most :data:`MAX_THREADS` runner threads are alive at once,
so jobs that hang in the kernel cannot make the agent pile up threads. See
https://man7.org/linux/man-pages/man2/setns.2.html and
https://man7.org/linux/man-pages/man7/network_namespaces.7.html.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["CLONE_NEWNET", "DEFAULT_TIMEOUT", "MAX_THREADS", "NetnsRunner", "run_in_netns"]

_log = logging.getLogger(__name__)

#: ``setns(2)`` nstype for a network namespace (``<linux/sched.h>``).
CLONE_NEWNET = 0x40000000
#: Seconds a caller waits for a batch by default.
DEFAULT_TIMEOUT = 30.0
#: Runner threads alive at once in the process, hung ones included.
MAX_THREADS = 8

_T = TypeVar("_T")
_Job = tuple[int | None, Callable[[], Any]]
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


class _Batch:
    """One caller's jobs, the thread's duplicates of their fds, and their results."""

    def __init__(self, jobs: Sequence[_Job]) -> None:
        self.jobs = jobs
        self.results: list[Any] = [_NOT_DONE] * len(jobs)
        self.fds: list[int | None] = []
        for i, (nsfd, _job) in enumerate(jobs):
            try:
                self.fds.append(None if nsfd is None else os.dup(nsfd))
            except OSError as exc:  # a bad fd: that job fails, the others run
                self.fds.append(None)
                self.results[i] = exc
        self.done = threading.Event()
        self.abandoned = False  # the caller stopped waiting: jobs not started never run

    def close(self) -> None:
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds = []
        self.done.set()

    def fail(self, exc: BaseException) -> None:
        for i, result in enumerate(self.results):
            if result is _NOT_DONE:
                self.results[i] = exc
        self.close()


class NetnsRunner:
    """A thread that runs batches of jobs inside network namespaces, kept between batches.

    The thread starts with the first batch; :meth:`stop` ends it after the batches already queued
    (a later :meth:`run` starts another). See the module docstring.
    """

    def __init__(self, name: str = "kubeskoop-netns") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Batch | None] | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def run(self, jobs: Sequence[tuple[int | None, Callable[[], _T]]], *,
            timeout: float = DEFAULT_TIMEOUT, what: str = "namespace jobs") -> list[_T | BaseException]:
        """Run each ``(nsfd, job)`` inside the network namespace of ``nsfd`` (``None``: the one the
        runner started in), in order; return each job's result or exception in its place.

        A job whose namespace is the one the thread is already in runs without ``setns`` (so work
        in the caller's own namespace needs no privilege). A failed ``setns`` is that job's
        ``OSError``, naming the namespace. Jobs not done within ``timeout`` seconds (or not started
        because :data:`MAX_THREADS` threads are busy) get a ``TimeoutError`` naming ``what``.
        """
        return self._submit(jobs, timeout, what, last=False)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the batches already queued, and join it. Idempotent."""
        with self._lock:
            thread, batches = self._thread, self._queue
            self._thread = self._queue = None
        if thread is not None and batches is not None:
            batches.put(None)
            thread.join(timeout)
            if thread.is_alive():
                _log.warning("%s thread did not stop within %.1fs", self.name, timeout)

    def _submit(self, jobs: Sequence[_Job], timeout: float, what: str, last: bool) -> list[Any]:
        if not jobs:
            return []
        deadline = time.monotonic() + timeout
        batch = _Batch(jobs)
        # With ``last`` the thread ends with this batch, without going back first.
        items = [batch, None] if last else [batch]
        with self._lock:
            thread, batches = self._thread, self._queue
            if batches is None:
                try:
                    thread = self._start(timeout, what, items)
                except BaseException as exc:
                    batch.fail(exc)
                    return list(batch.results)
            else:
                for item in items:
                    batches.put(item)
            if last:
                self._thread = self._queue = None
        if last and thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not batch.done.wait(max(0.0, deadline - time.monotonic())):
            batch.abandoned = True
        late = TimeoutError(f"{what}: not done within {timeout}s")
        return [late if r is _NOT_DONE else r for r in list(batch.results)]

    def _start(self, timeout: float, what: str, items: list[_Batch | None]) -> threading.Thread:
        """Start the thread (under the lock), in the calling thread's namespace, with ``items``
        already queued (so a one-batch thread never waits for its batch)."""
        slots = _slots
        if not slots.acquire(timeout=timeout):
            raise TimeoutError(f"{what}: {MAX_THREADS} namespace threads still busy after {timeout}s")
        home = -1
        try:
            home = os.open(_THREAD_NET, _FLAGS)  # a new thread starts in its creator's namespace
            batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
            for item in items:
                batches.put(item)
            thread = threading.Thread(target=self._serve,
                                      args=(batches, home, os.fstat(home).st_ino, slots),
                                      name=self.name, daemon=True)
            thread.start()
        except BaseException:
            if home >= 0:
                os.close(home)
            slots.release()
            raise
        self._thread, self._queue = thread, batches
        return thread

    def _serve(self, batches: queue.SimpleQueue[_Batch | None], home: int, home_inode: int,
               slots: threading.BoundedSemaphore) -> None:
        here = home_inode
        try:
            while True:
                batch = batches.get()
                if batch is None:
                    return
                try:
                    here = self._run_batch(batch, home, here)
                    if here != home_inode and batches.empty():
                        # Home before answering, so that an idle runner is never inside another
                        # namespace.
                        _setns(home, home_inode)
                        here = home_inode
                except OSError as exc:
                    _log.warning("%s thread cannot return to its namespace, ending: %s",
                                 self.name, exc)
                    self._retire(batches, exc)
                    return
                finally:
                    batch.close()
        finally:
            os.close(home)
            slots.release()

    @staticmethod
    def _run_batch(batch: _Batch, home: int, here: int) -> int:
        """Run one batch from namespace ``here``; returns the namespace the thread ends in."""
        for i, (fd, (_nsfd, job)) in enumerate(zip(batch.fds, batch.jobs)):
            if batch.results[i] is not _NOT_DONE:
                continue  # its fd could not be duplicated
            if batch.abandoned:
                break
            try:
                target = home if fd is None else fd
                inode = os.fstat(target).st_ino
                if inode != here:
                    _setns(target, inode)
                    here = inode
                batch.results[i] = job()
            except BaseException as exc:  # handed to the caller, whatever it is
                batch.results[i] = exc
        return here

    def _retire(self, batches: queue.SimpleQueue[_Batch | None], exc: BaseException) -> None:
        """This thread ends: the runner starts another for the next batch; queued ones fail."""
        with self._lock:
            if self._queue is batches:
                self._thread = self._queue = None
        while not batches.empty():
            batch = batches.get()
            if batch is not None:
                batch.fail(OSError(f"{self.name} thread ended: {exc}"))


def run_in_netns(jobs: Sequence[tuple[int | None, Callable[[], _T]]], *,
                 timeout: float = DEFAULT_TIMEOUT,
                 what: str = "namespace jobs") -> list[_T | BaseException]:
    """:meth:`NetnsRunner.run` on a thread of its own that ends with the batch (``None``: the
    caller's own namespace)."""
    return NetnsRunner()._submit(jobs, timeout, what, last=True)
