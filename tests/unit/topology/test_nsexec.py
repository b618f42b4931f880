# SPDX-License-Identifier: Apache-2.0
"""run_in_netns and NetnsRunner without root: jobs in the caller's own namespace need no setns;
failures, timeouts and the thread bound come back per job; a kept runner keeps one thread until
stopped. (Entering other namespaces: tests/privileged/test_netns.py.)"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_kubeskoop.topology import nsexec
from otel_kubeskoop.topology.nsexec import MAX_THREADS, NetnsRunner, run_in_netns

OWN = "/proc/thread-self/ns/net"


def own_inode() -> int:
    return os.stat(OWN).st_ino


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kubeskoop-netns"]


@pytest.fixture
def own_fd() -> Iterator[int]:
    fd = os.open(OWN, os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def test_jobs_in_the_callers_namespace_run_in_order_on_another_thread(own_fd: int) -> None:
    caller = threading.get_ident()
    ran: list[int] = []

    def job(n: int) -> tuple[int, int, bool]:
        ran.append(n)
        return n, own_inode(), threading.get_ident() != caller

    got = run_in_netns([(None, lambda: job(1)), (own_fd, lambda: job(2)), (None, lambda: job(3))])
    assert got == [(n, own_inode(), True) for n in (1, 2, 3)] and ran == [1, 2, 3]
    assert not workers()
    assert run_in_netns([]) == []


def test_each_job_gets_its_own_exception_and_the_rest_still_run(own_fd: int, tmp_path: Path) -> None:
    not_a_namespace = tmp_path / "regular-file"
    not_a_namespace.write_bytes(b"")
    fd = os.open(not_a_namespace, os.O_RDONLY)
    try:
        first, second, third, fourth = run_in_netns(
            [(fd, lambda: "never"), (own_fd, lambda: 1 // 0), (None, lambda: "ran"), (-1, lambda: "never")])
    finally:
        os.close(fd)
    # setns on a regular file: EINVAL (EPERM without CAP_SYS_ADMIN); the namespace is named.
    assert isinstance(first, OSError) and "setns" in str(first)
    assert str(not_a_namespace.stat().st_ino) in str(first)
    assert isinstance(second, ZeroDivisionError)
    assert third == "ran"
    assert isinstance(fourth, OSError)  # not an fd: it cannot be duplicated


def test_the_caller_waits_at_most_timeout_and_may_close_its_fd(own_fd: int) -> None:
    release = threading.Event()
    fd = os.dup(own_fd)
    try:
        (got,) = run_in_netns([(fd, lambda: release.wait(10))], timeout=0.2, what="a slow job")
    finally:
        os.close(fd)  # the thread holds its own duplicate
    assert isinstance(got, TimeoutError) and str(got) == "a slow job: not done within 0.2s"
    (worker,) = workers()
    release.set()
    worker.join(5)
    assert not worker.is_alive()


def test_threads_that_hang_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsexec, "_slots", threading.BoundedSemaphore(MAX_THREADS))
    release = threading.Event()
    try:
        for _ in range(MAX_THREADS):
            (got,) = run_in_netns([(None, lambda: release.wait(10))], timeout=0.05)
            assert isinstance(got, TimeoutError)
        assert len(workers()) == MAX_THREADS
        got = run_in_netns([(None, lambda: "a"), (None, lambda: "b")], timeout=0.05, what="more")
        assert [str(e) for e in got] == [f"more: {MAX_THREADS} namespace threads still busy after 0.05s"] * 2
    finally:
        release.set()
    for worker in workers():
        worker.join(5)
    assert run_in_netns([(None, lambda: "a")]) == ["a"]


def test_a_kept_runner_serves_every_batch_on_one_thread_until_stopped() -> None:
    runner = NetnsRunner(name="ksk-test-runner")
    try:
        idents = [runner.run([(None, threading.get_ident)])[0] for _ in range(3)]
        assert len(set(idents)) == 1 and threading.get_ident() not in idents and runner.running
    finally:
        runner.stop()
    assert not runner.running
    assert not [t for t in threading.enumerate() if t.name == "ksk-test-runner"]
    try:
        assert runner.run([(None, lambda: "again")]) == ["again"] and runner.running
    finally:
        runner.stop()


def test_jobs_whose_caller_stopped_waiting_never_run() -> None:
    runner = NetnsRunner(name="ksk-test-runner")
    release = threading.Event()
    ran: list[str] = []
    try:
        (first,) = runner.run([(None, lambda: release.wait(10))], timeout=0.1, what="first")
        (second,) = runner.run([(None, lambda: ran.append("second"))], timeout=0.1, what="second")
        assert (str(first), str(second)) == ("first: not done within 0.1s", "second: not done within 0.1s")
        release.set()
        assert runner.run([(None, lambda: "third")]) == ["third"]
    finally:
        release.set()
        runner.stop()
    assert ran == []
